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

from fcnjax import configs as config_lib
from fcnjax import models
from fcnjax.studies import experiment
from fcnjax.data import pipeline
from fcnjax.models import upsamplers
from fcnjax.train import assemble, loop


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


class PixelShuffle(upsamplers.Upsample):
  """Declares nothing it needs from the encoder and its kind (learned, dense).
  x`factor` sub-pixel upsampling: 1x1 conv to f*f*C channels, then depth-to-space
  (output pixel (f*i + a, f*j + b), channel c = conv channel (a*f + b)*C + c at (i, j))."""
  learned = True

  def upsample(self, x, given, size):
    n, h, w, c = x.shape
    f = self.factor
    y = nn.Conv(f * f * c, (1, 1), dtype=self.dtype, name="conv")(x)
    return y.reshape(n, h, w, f, f, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * f, w * f, c)


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

  coarsest_stride = 32


def strided_net(model_config, axis_name=None, dtype=jnp.float32, *, depth=None, head=True,
                switches=False):
  """The backbone factory: this net reads no config field, has no head to drop,
  one depth and no switch pools."""
  if switches or depth is not None:
    raise ValueError("config.model.backbone='strided' has no switch pools and one depth")
  return StridedNet(dtype=dtype)


@pytest.fixture
def registered(monkeypatch):
  toy = types.SimpleNamespace(CLASS_NAMES=("background", "square"), source=_toy_source)
  monkeypatch.setitem(pipeline.DATASETS, "toy", toy)  # the one registry line each
  monkeypatch.setitem(models.UPSAMPLERS, "outside_shuffle", PixelShuffle)
  monkeypatch.setitem(models.BACKBONES, "strided", strided_net)


def _toy_config(**fields):
  return experiment.with_fields(config_lib.default_config(), {
      "data.name": "toy", "data.crop_size": 32, "data.scale_range": (1.0, 1.0),
      "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 2, "log_every_steps": 1,
      "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0,
      **fields})


def test_pixel_shuffle_is_depth_to_space():
  """The module's output against a loop over the definition, with a known 1x1 kernel."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
  up = PixelShuffle(2)
  variables = up.init(jax.random.key(0), x)
  kernel = rng.normal(size=(1, 1, 2, 8)).astype(np.float32)
  variables = {"params": {"conv": {"kernel": kernel, "bias": np.zeros(8, np.float32)}}}
  y = np.asarray(up.apply(variables, x, size=(6, 7)))  # cropped to 6 x 7
  conv = np.einsum("nhwc,cd->nhwd", x.astype(np.float64), kernel[0, 0].astype(np.float64))
  expected = np.zeros((2, 6, 8, 2))
  for i in range(3):
    for j in range(4):
      for a in range(2):
        for b in range(2):
          expected[:, 2 * i + a, 2 * j + b] = conv[:, i, j, (2 * a + b) * 2:(2 * a + b + 1) * 2]
  np.testing.assert_allclose(y, expected[:, :, :7], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family,fields,stages", [
    ("decoder", {"model.depth": 4}, 4), ("segnet", {"model.depth": 4}, 4),
    ("fcn", {"model.variant": "8s"}, 3)])
def test_toy_dataset_and_upsampler_train_two_steps(registered, tmp_path, family, fields, stages):
  """The operator registered from outside trains in the decoder, SegNet and FCN-8s."""
  config = _toy_config(**{"model.name": family, "model.backbone": "tiny",
                          "model.upsample": "outside_shuffle", **fields})
  info = pipeline.get_info(config.data)
  assert info.class_names == ("background", "square") and info.num_train == 16
  scores = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(scores["mean_iou"]) and len(scores["per_class_iou"]) == 2
  assert models.resolve("outside_shuffle").kind == ("learned", "dense", "unguided")
  model = assemble.build_model(config, info)
  params = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
  kernels = [v.shape for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
             if v.ndim == 4 and v.shape[:2] == (1, 1) and v.shape[3] == 4 * v.shape[2]
             and any(getattr(k, "key", "") == "conv" for k in path)]
  # One sub-pixel conv per x2 stage (FCN-8s: upscore2, upscore_pool4; its x8 one has 64C).
  assert len(kernels) == (2 if family == "fcn" else stages)


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
  model = assemble.build_model(config, pipeline.get_info(config.data))
  params = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
  assert sorted(params["backbone"]) == ["Conv_0", "Conv_1", "Conv_2"]
  # The encoder-decoders refuse it, naming what it does not provide.
  with pytest.raises(ValueError, match="no switch pools"):
    assemble.build_model(experiment.with_fields(config, {"model.name": "segnet"}),
                         pipeline.get_info(config.data))
  decoder = assemble.build_model(experiment.with_fields(
      config, {"model.name": "decoder", "model.upsample": "nearest"}),
      pipeline.get_info(config.data))
  with pytest.raises(ValueError, match=r"the decoder model needs .*missing \['stride2', 'stride4'\]"):
    decoder.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
