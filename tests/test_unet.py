"""The U-Net family from outside the package: registered by one line, built from
a config, trained two steps on a VGG and on a ResNet backbone."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax import configs as config_lib
from fcnjax import models
from fcnjax.studies import experiment
from fcnjax.train import loop


def _unet(backbone, upsample="nearest", classes=4):
  return models.build_model(dict(name="unet", backbone=backbone, upsample=upsample), classes)


def test_unet_is_fully_convolutional_with_a_skip_at_every_stride():
  counts = []
  for shape in ((1, 32, 32, 3), (2, 50, 38, 3)):
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    model = _unet("tiny")
    variables = model.init(jax.random.key(0), x)
    y = model.apply(variables, x)
    assert y.shape == shape[:3] + (4,) and np.isfinite(np.asarray(y)).all()
    counts.append(sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"])))
  assert counts[0] == counts[1]  # same parameters at any input size
  params = variables["params"]
  # tiny VGG: pool1..4 widths 8, 16, 16, 32 at strides 2..16, fc7 32 channels at stride 32.
  # Stage s: up(previous) ++ skip -> 3x3 conv to the skip's width (no bias, BN after).
  previous = 32
  for s, skip in ((16, 32), (8, 16), (4, 16), (2, 8)):
    kernel = params[f"dec{s}_1"]["Conv_0"]["kernel"]
    assert kernel.shape == (3, 3, previous + skip, skip)
    previous = skip
  assert params["dec1_1"]["Conv_0"]["kernel"].shape == (3, 3, 8, 8)  # no skip at stride 1


def test_unet_unpools_with_the_backbones_switches_where_it_records_them():
  """max_unpool: the VGG backbone without fc6 / fc7, recording switches; each
  stage unpools by the switches of the pool it inverts (compared with numpy)."""
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 32, 32, 3)), jnp.float32)
  model = _unet("tiny", upsample="max_unpool")
  variables = model.init(jax.random.key(0), x)
  assert "fc6" not in variables["params"]["backbone"]
  y, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  assert y.shape == (1, 32, 32, 4)
  inter = state["intermediates"]
  pooled = np.asarray(inter["backbone"]["switches5"][0]).astype(np.int64)  # pool5 -> stride 32
  coarse = np.asarray(inter["backbone"]["__call__"][0]["stride32"])
  expected = np.zeros((1, 2, 2, coarse.shape[-1]), np.float32)
  b, i, j, c = np.indices(coarse.shape)
  expected[b, 2 * i + pooled // 2, 2 * j + pooled % 2, c] = coarse
  np.testing.assert_array_equal(np.asarray(inter["up16"]["__call__"][0]), expected)
  with pytest.raises(ValueError, match="records no pooling switches"):
    _unet("resnet18", upsample="max_unpool")


@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_unet_trains_two_steps(backbone, tmp_path):
  config = experiment.with_fields(config_lib.default_config(), {
      "model.name": "unet", "model.backbone": backbone, "model.upsample": "bilinear",
      "data.tfds_config": "tiny", "data.data_dir": str(tmp_path / "tfds"),
      "data.crop_size": 32, "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 2,
      "log_every_steps": 1, "eval_every_steps": 2, "checkpoint_every_steps": 2,
      "optimizer.warmup_steps": 0})
  scores = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(scores["mean_iou"]) and len(scores["per_class_iou"]) == 7
