"""Input channels other than 3 (config.data.channels, folder datasets):
grayscale PNGs and uint8 .npy arrays read and checked, ImageNet statistics
per channel, a pretrained first conv adapted so that a model sees a gray
image as the RGB model sees (g, g, g), and a 4-channel folder that trains
from 3-channel weights, predicts and normalises in the exported graph."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from fcnjax import configs as config_lib
from fcnjax import exporting, inference, models
from fcnjax.data import check, pipeline
from fcnjax.studies import experiment
from fcnjax.train import assemble, loop, params_io
from fcnjax.train import state as state_lib

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def check_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("FCNJAX_DATA_CHECK_CACHE", str(tmp_path / "cache"))


def test_grayscale_pngs_and_npy_arrays_are_read_with_their_channels(tmp_path):
  gray = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
  Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
  np.testing.assert_array_equal(check.read_image(str(tmp_path / "g.png"), 1), gray[..., None])
  cube = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
  np.save(tmp_path / "c.npy", cube)
  np.testing.assert_array_equal(check.read_image(str(tmp_path / "c.npy"), 4), cube)
  np.save(tmp_path / "flat.npy", gray)
  assert check.read_image(str(tmp_path / "flat.npy"), 1).shape == (5, 7, 1)
  Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb.png")
  with pytest.raises(ValueError, match=r"rgb.png has mode RGB, expected L \(config.data"
                     r".channels=1\)"):
    check.read_image(str(tmp_path / "rgb.png"), 1)
  with pytest.raises(ValueError, match=r"c.npy has shape \(5, 7, 4\), expected \(H, W, 3\)"):
    check.read_image(str(tmp_path / "c.npy"), 3)
  np.save(tmp_path / "f.npy", cube.astype(np.float32))
  with pytest.raises(ValueError, match=r"f.npy is float32, expected uint8"):
    check.read_image(str(tmp_path / "f.npy"), 4)
  with pytest.raises(ValueError, match=r"g.png: config.data.channels=4 needs .npy arrays"):
    check.read_image(str(tmp_path / "g.png"), 4)


def test_imagenet_normalisation_per_channel():
  """Gray: the RGB statistics averaged; more channels: RGB's repeated in order."""
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  for channels, (m, s) in {1: ([mean.mean()], [std.mean()]),
                           5: (mean[[0, 1, 2, 0, 1]], std[[0, 1, 2, 0, 1]])}.items():
    x = RNG.integers(0, 256, (2, 3, 4, channels), dtype=np.uint8)
    want = (x / 255.0 - np.array(m)) / np.array(s)
    got = pipeline.normalize(x, "imagenet")
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(pipeline.denormalize(got, "imagenet"), x)
    # the exported graph's lookup table: the pipeline's values bit for bit
    np.testing.assert_array_equal(np.asarray(exporting.normalize(jnp.asarray(x), "imagenet")),
                                  got)


def test_channel_options_are_refused_by_name():
  data = pipeline.default_data_config()
  data.update(dict(name="folder", root="/nowhere", channels=0))
  with pytest.raises(ValueError, match=r"config.data.channels=0: must be an int >= 1"):
    pipeline.get_source(data, "train")
  data.update(dict(channels=1, normalization="caffe"))
  with pytest.raises(ValueError, match=r"'caffe' is BGR \(3 channels\) but "
                     r"config.data.channels=1"):
    pipeline.get_source(data, "train")
  shapes = pipeline.default_data_config()
  shapes.channels = 1
  with pytest.raises(ValueError, match=r"config.data.channels=1 is read only by the "
                     r"'folder' dataset"):
    pipeline.get_source(shapes, "train")


MODEL = dict(name="fcn", backbone="tiny", variant="8s")


@pytest.fixture(scope="module")
def rgb():
  """A 3-channel FCN-8s (tiny) train state with random weights."""
  model = models.build_model(MODEL, 5)
  return state_lib.create_train_state(model, optax.sgd(0.1), jax.random.key(0), (1, 32, 32, 3))


def _logits(state, params, x):
  variables = {"params": params, "batch_stats": state.batch_stats}
  return np.asarray(state.apply_fn(variables, jnp.asarray(x, jnp.float32), train=False),
                    np.float64)


@pytest.mark.parametrize("channels", [1, 6])
def test_adapted_first_conv_sees_what_the_rgb_model_sees(tmp_path, rgb, channels):
  """From 3-channel weights: a gray image g through the 1-channel model gives
  the RGB model's logits of (g, g, g); (R, G, B, R, G, B) through the 6-channel
  model gives those of (R, G, B) (timm's sum and cyclic repeat scaled by 3/C)."""
  params_io.save_npz(rgb.params, str(tmp_path / "rgb.npz"))
  model = models.build_model(MODEL, 5)
  target = jax.eval_shape(model.init, jax.random.key(1), jnp.zeros((1, 32, 32, channels)))
  params, copied = assemble.merge_params(target["params"],
                                         params_io.load_npz(str(tmp_path / "rgb.npz")), channels)
  flat = lambda p: {jax.tree_util.keystr(k): v for k, v in
                    jax.tree_util.tree_flatten_with_path(p)[0]}
  old, new = flat(rgb.params), flat(params)
  assert copied == len(old) == len(new)  # every leaf copied, the first conv adapted
  differ = [k for k in old if old[k].shape != new[k].shape]
  assert len(differ) == 1 and old[differ[0]].shape[2] == 3
  assert all(np.array_equal(old[k], new[k]) for k in old if k not in differ)
  kernel = np.asarray(old[differ[0]])
  expect = (kernel.sum(2, keepdims=True) if channels == 1 else
            np.stack([kernel[:, :, c % 3] * 3 / channels for c in range(channels)], 2))
  np.testing.assert_allclose(new[differ[0]], expect, rtol=1e-6)
  x = RNG.normal(size=(2, 32, 32, 3 if channels == 6 else 1))
  rgb_input = np.repeat(x, 3, -1) if channels == 1 else x
  wide_input = x if channels == 1 else np.concatenate([x, x], -1)
  want = _logits(rgb, rgb.params, rgb_input)
  # float32 convolutions of differently summed terms: tolerance from the logits' scale
  np.testing.assert_allclose(_logits(rgb, params, wide_input), want,
                             atol=1e-4 * np.abs(want).max(), rtol=0)


def _npy_folder(root, channels=4):
  for split, n in (("train", 8), ("val", 4)):
    for i in range(n):
      os.makedirs(f"{root}/images/{split}", exist_ok=True)
      os.makedirs(f"{root}/masks/{split}", exist_ok=True)
      np.save(f"{root}/images/{split}/{i:03d}.npy",
              RNG.integers(0, 256, (36, 40, channels), dtype=np.uint8))
      Image.fromarray(RNG.integers(0, 3, (36, 40)).astype(np.uint8), mode="L").save(
          f"{root}/masks/{split}/{i:03d}.png")
  with open(f"{root}/classes.txt", "w") as f:
    f.write("background\nfield\nroad\n")


def test_a_four_channel_npy_folder_trains_from_rgb_weights_and_predicts(tmp_path, rgb):
  root = tmp_path / "bands"
  _npy_folder(str(root))
  params_io.save_npz(rgb.params, str(tmp_path / "rgb.npz"))
  config = experiment.with_fields(config_lib.default_config(), {
      "data.name": "folder", "data.root": str(root), "data.eval_split": "val",
      "data.image_suffix": ".npy", "data.channels": 4, "data.crop_size": 32,
      "data.num_threads": 0, "model.name": "fcn", "model.variant": "8s",
      "model.backbone": "tiny", "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 2,
      "log_every_steps": 1, "eval_every_steps": 2, "checkpoint_every_steps": 2,
      "optimizer.warmup_steps": 0, "init_from": str(tmp_path / "rgb.npz")})
  batch = next(pipeline.train_batches(config.data, 8, seed=0, num_workers=0))
  assert batch["image"].shape == (8, 32, 32, 4)
  scores = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(scores["mean_iou"])
  image = str(root / "images" / "val" / "000.npy")
  [(path, out, error)] = list(inference.predict_each(config, str(tmp_path / "run"), [image],
                                                     str(tmp_path / "masks"), tile=None))
  assert error is None
  with Image.open(out) as mask:
    assert mask.size == (40, 36) and np.asarray(mask).max() < 3
