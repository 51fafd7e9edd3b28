"""predict reads 16-bit, palette, grayscale and RGBA images correctly; in a
folder, an unreadable file is skipped with a warning naming it, the others
are predicted, and the summary names it with exit status 1."""
import os

import jax
import numpy as np
import pytest
from PIL import Image

from fcnjax import inference
from fcnjax.commands import predict
from fcnjax.data import pipeline
from fcnjax.train import assemble, checkpoint
from test_train import tiny_config


def _ramp16(h=20, w=24):
  """uint16 values spread over the whole 0..65535 range."""
  return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def _colors(h=20, w=24, seed=0):
  """An RGB image of 5 distinct colours (fits a palette exactly)."""
  palette = np.random.default_rng(seed).integers(0, 256, (5, 3)).astype(np.uint8)
  index = np.random.default_rng(seed + 1).integers(0, 5, (h, w))
  return palette[index]


def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path):
  values = _ramp16()
  Image.fromarray(values).save(tmp_path / "g16.png")
  with Image.open(tmp_path / "g16.png") as f:
    assert f.mode == "I;16"  # what the test means to cover
  rgb = inference.read_rgb(str(tmp_path / "g16.png"))
  expected = (values.astype(np.int64) * 255 + 65535 // 2) // 65535  # round(v * 255 / 65535)
  assert rgb.dtype == np.uint8 and rgb.shape == values.shape + (3,)
  for c in range(3):
    np.testing.assert_array_equal(rgb[..., c], expected)
  assert rgb.min() == 0 and rgb.max() == 255
  assert 0.4 < rgb.mean() / 255 < 0.6  # a ramp, not a saturated white image


def test_palette_grayscale_and_rgba_are_read_as_rgb(tmp_path):
  colors = _colors()
  Image.fromarray(colors).convert("P", palette=Image.Palette.ADAPTIVE, colors=5).save(
      tmp_path / "pal.png")
  with Image.open(tmp_path / "pal.png") as f:
    assert f.mode == "P"
  np.testing.assert_array_equal(inference.read_rgb(str(tmp_path / "pal.png")), colors)
  gray = _ramp16().astype(np.uint32) // 257
  Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "l.png")
  np.testing.assert_array_equal(inference.read_rgb(str(tmp_path / "l.png")),
                                np.repeat(gray[..., None], 3, -1))
  alpha = np.full(colors.shape[:2] + (1,), 7, np.uint8)
  Image.fromarray(np.concatenate([colors, alpha], -1)).save(tmp_path / "rgba.png")
  np.testing.assert_array_equal(inference.read_rgb(str(tmp_path / "rgba.png")), colors)


def test_unreadable_file_names_itself(tmp_path):
  (tmp_path / "x.png").write_text("not an image")
  with pytest.raises(ValueError, match=r"x\.png: not a readable image"):
    inference.read_rgb(str(tmp_path / "x.png"))


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
  """(config, model, state, workdir): random weights (non-trivial masks), saved."""
  root = tmp_path_factory.mktemp("predict")
  config = tiny_config(root / "tfds", **{"model.zero_init_score": False})
  model = assemble.build_model(config, pipeline.get_info(config.data))
  state = assemble.create_state(config, model, jax.random.key(0))[0]
  rng = np.random.default_rng(0)
  state = state.replace(params=jax.tree.map(
      lambda p: (0.5 * rng.normal(size=p.shape)).astype(np.float32), state.params))
  ckpt = checkpoint.Checkpoints(str(root / "w"))
  ckpt.save(1, state)
  ckpt.close()
  return config, model, state, str(root / "w")


def _mask(model, state, config, rgb):
  x = pipeline.normalize(rgb, config.data.normalization)[None]
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x)
  return np.asarray(logits[0]).argmax(-1)


def test_folder_with_an_unreadable_file(random_model, tmp_path, caplog, capsys):
  config, model, state, workdir = random_model
  folder = tmp_path / "in"
  folder.mkdir()
  values, colors = _ramp16(), _colors()
  Image.fromarray(values).save(folder / "a16.png")
  Image.fromarray(colors).convert("P", palette=Image.Palette.ADAPTIVE, colors=5).save(
      folder / "b_pal.png")
  Image.fromarray(colors).save(folder / "c.png")
  (folder / "x.png").write_text("not an image")
  out = str(tmp_path / "out")
  assert predict.predict(config, workdir, str(folder), out, which="latest") == 1
  assert sorted(os.listdir(out)) == sorted(
      f"{n}{s}.png" for n in ("a16", "b_pal", "c") for s in ("", "_overlay"))
  assert any("x.png" in r.getMessage() and "not a readable image" in r.getMessage()
             for r in caplog.records if r.levelname == "WARNING")
  err = capsys.readouterr().err
  assert "3 predicted, 1 skipped (unreadable: x.png)" in err
  # Each mask equals the model on the independently decoded image.
  gray = ((values.astype(np.int64) * 255 + 65535 // 2) // 65535).astype(np.uint8)
  expected = {"a16": np.repeat(gray[..., None], 3, -1), "b_pal": colors, "c": colors}
  for name, rgb in expected.items():
    with Image.open(os.path.join(out, f"{name}.png")) as mask:
      np.testing.assert_array_equal(np.asarray(mask), _mask(model, state, config, rgb))
  assert len(np.unique(_mask(model, state, config, expected["a16"]))) >= 2


def test_all_readable_exits_zero(random_model, tmp_path, capsys):
  config, _, _, workdir = random_model
  Image.fromarray(_colors()).save(tmp_path / "c.png")
  assert predict.predict(config, workdir, str(tmp_path / "c.png"),
                         str(tmp_path / "out"), which="latest") == 0
  assert "1 predicted, 0 skipped" in capsys.readouterr().out
