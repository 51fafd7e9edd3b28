"""Extending from outside the package: a toy dataset, a pixel-shuffle decoder
upsampler and a strided-conv backbone, each one registry line, train two steps
(as in docs/extending.md)."""
import types
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax import config as config_lib
from fcnjax import experiment, models
from fcnjax.data import pipeline
from fcnjax.models import decoder
from fcnjax.train import loop


def _toy_source(data_config, split, limit=None):
  """Bright squares (class 1) on a dark background, 32x32."""
  rng = np.random.default_rng(0 if split == "train" else 1)
  examples = []
  for _ in range(limit or 16):
    y, x = rng.integers(0, 20, 2)
    label = np.zeros((32, 32), np.uint8)
    label[y:y + 12, x:x + 12] = 1
    image = np.repeat((40 + 180 * label)[..., None], 3, -1).astype(np.uint8)
    examples.append((image, label))
  return examples


def pixel_shuffle(x, switches, size, **kw):
  """x2 sub-pixel upsampling: 1x1 conv to 4C channels, then depth-to-space."""
  n, h, w, c = x.shape
  y = nn.Conv(4 * c, (1, 1), **kw)(x)
  y = y.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)
  return decoder.fit(y, size)


class StridedNet(nn.Module):
  """Three strided convs: (N, H, W, 3) -> {'stride8', 'stride16', 'stride32'} maps."""
  width: int = 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    features = {}
    for stride, kernel, step in ((8, 8, 8), (16, 3, 2), (32, 3, 2)):
      x = nn.relu(nn.Conv(self.width * stride // 8, (kernel, kernel), strides=step,
                          dtype=self.dtype)(x))
      features[f"stride{stride}"] = x
    return features


def strided_net(model_config, axis_name=None, dtype=jnp.float32):
  """The backbone factory: this net reads no config field."""
  return StridedNet(dtype=dtype)


@pytest.fixture
def registered(monkeypatch):
  toy = types.SimpleNamespace(CLASS_NAMES=("background", "square"), source=_toy_source)
  monkeypatch.setitem(pipeline.DATASETS, "toy", toy)  # the one registry line each
  monkeypatch.setitem(models.DECODER_UPSAMPLERS, "pixel_shuffle", pixel_shuffle)
  monkeypatch.setitem(models.BACKBONES, "strided", strided_net)


def _toy_config(**fields):
  return experiment.with_fields(config_lib.default_config(), {
      "data.name": "toy", "data.crop_size": 32, "data.scale_range": (1.0, 1.0),
      "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 2, "log_every_steps": 1,
      "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0,
      **fields})


def test_pixel_shuffle_is_depth_to_space():
  x = np.arange(2 * 2 * 4, dtype=np.float32).reshape(1, 2, 2, 4)  # c = 1 after the conv
  y = x.reshape(1, 2, 2, 2, 2, 1).transpose(0, 1, 3, 2, 4, 5).reshape(1, 4, 4, 1)
  for i in range(2):
    for j in range(2):
      np.testing.assert_array_equal(y[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2, 0],
                                    x[0, i, j].reshape(2, 2))


def test_toy_dataset_and_upsampler_train_two_steps(registered, tmp_path):
  config = _toy_config(**{"model.name": "decoder", "model.backbone": "tiny",
                          "model.upsample": "pixel_shuffle"})
  info = pipeline.get_info(config.data)
  assert info.class_names == ("background", "square") and info.num_train == 16
  scores = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(scores["mean_iou"]) and len(scores["per_class_iou"]) == 2
  model = loop.build_model(config, info)
  params = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
  kernels = [v.shape for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
             if v.ndim == 4 and v.shape[:2] == (1, 1) and v.shape[3] == 4 * v.shape[2]]
  assert len(kernels) == 4  # one sub-pixel conv in each of the four decoder stages


def test_strided_backbone_gives_the_fcn_its_skips():
  x = np.random.default_rng(0).normal(size=(2, 40, 56, 3)).astype(np.float32)
  net = StridedNet()
  features = net.apply(net.init(jax.random.key(0), x), x)
  assert {k: v.shape for k, v in features.items()} == {
      "stride8": (2, 5, 7, 8), "stride16": (2, 3, 4, 16), "stride32": (2, 2, 2, 32)}
  model = models.FCN(2, variant="8s", backbone=strided_net({}))
  params = model.init(jax.random.key(0), x)["params"]
  assert params["backbone"]["Conv_0"]["kernel"].shape == (8, 8, 3, 8)
  assert params["score_pool3"]["kernel"].shape == (1, 1, 8, 2)  # reads stride8
  assert params["score_pool4"]["kernel"].shape == (1, 1, 16, 2)  # reads stride16
  assert params["score_fr"]["kernel"].shape == (1, 1, 32, 2)  # reads stride32
  assert model.apply({"params": params}, x).shape == (2, 40, 56, 2)


def test_toy_backbone_trains_two_steps_in_an_fcn(registered, tmp_path):
  config = _toy_config(**{"model.name": "fcn", "model.variant": "8s",
                          "model.backbone": "strided"})
  scores = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(scores["mean_iou"]) and len(scores["per_class_iou"]) == 2
  model = loop.build_model(config, pipeline.get_info(config.data))
  params = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
  assert sorted(params["backbone"]) == ["Conv_0", "Conv_1", "Conv_2"]
