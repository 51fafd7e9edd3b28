"""Errors a user can cause end an entry point with one `error: ...` line
naming the file or field (fcnjax.runtime.errors): in process through
`errors.as_messages` around the library calls the entry points make, and
two real commands; unknown errors and --traceback keep the frames; grain's
banner never ends the output."""
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax.commands import convert, predict
from fcnjax.runtime import errors
from fcnjax.studies import experiment
from fcnjax.data import pipeline
from fcnjax.train import loop
from test_data_voc import _config, make_sbd, make_voc
from test_train import tiny_config
from unwritable import permissions_enforced, read_only


def _line(call, *args, **kwargs):
  """The SystemExit message of as_messages around call(*args, **kwargs)."""
  with pytest.raises(SystemExit) as e:
    errors.as_messages(lambda argv: call(*args, **kwargs), [])
  return str(e.value.code)


@pytest.fixture
def voc_folders(tmp_path, monkeypatch):
  monkeypatch.setenv("FCNJAX_DATA_CHECK_CACHE", str(tmp_path / "cache"))
  return make_voc(str(tmp_path / "VOC2012")), make_sbd(str(tmp_path / "SBD"))


def test_a_data_error_inside_grain_ends_with_the_error_not_the_banner(voc_folders):
  voc_root, sbd_root = voc_folders
  mask = os.path.join(voc_root, "SegmentationClass", "2007_000001.png")
  with open(mask, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not a png")
  config = _config(voc_root, train_split="train_voc", num_threads=2)
  with pytest.raises(ValueError) as e:  # what grain hands back: the error + its banner
    next(pipeline.train_batches(config, 2, seed=0))
  assert any(errors.GRAIN_NOTE in n for n in getattr(e.value, "__notes__", []))
  line = _line(lambda: next(pipeline.train_batches(config, 2, seed=0)))
  assert line.startswith(f"error: mask {mask} is not a readable PNG") and "\n" not in line
  with pytest.raises(ValueError) as e:  # --traceback: frames kept, banner still removed
    errors.as_messages(lambda argv: next(pipeline.train_batches(config, 2, seed=0)), [],
                       show_frames=lambda: True)
  assert not any(errors.GRAIN_NOTE in n for n in getattr(e.value, "__notes__", []))


def test_a_bad_validation_mask_is_one_line_before_training(voc_folders, tmp_path):
  voc_root, sbd_root = voc_folders
  from test_data_voc import _palette_png
  from PIL import Image
  shape = np.asarray(Image.open(f"{voc_root}/JPEGImages/2008_000005.jpg")).shape[:2]
  _palette_png(f"{voc_root}/SegmentationClass/2008_000005.png", np.full(shape, 99))
  config = tiny_config(tmp_path / "tfds", **{
      "data.name": "voc", "data.tfds_config": "default",  # tiny_config sets shapes' field
      "data.manual_dir": voc_root, "data.sbd_dir": sbd_root,
      "data.train_split": "train", "data.eval_split": "seg11valid"})
  line = _line(loop.train_and_evaluate, config, str(tmp_path / "run"))
  assert line == (f"error: 1 of 2 examples of split 'seg11valid' fail the data checks: mask "
                  f"{voc_root}/SegmentationClass/2008_000005.png has labels [99] outside "
                  "[0, 21) and not 255 (ignore)")
  assert not os.path.exists(tmp_path / "run")


def test_tfds_config_is_checked_up_front(tmp_path):
  config = tiny_config(tmp_path / "tfds", **{"data.tfds_config": "huge"})
  assert _line(loop.train_and_evaluate, config, str(tmp_path / "run")) == (
      "error: config.data.tfds_config='huge': the 'shapes' dataset has the configs "
      "['default', 'tiny', 'small', 'study']")
  assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "tfds")


def test_missing_input_and_sweep_syntax(tmp_path):
  config = tiny_config(tmp_path / "tfds")
  assert _line(predict.predict, config, str(tmp_path), str(tmp_path / "no.png")) == (
      f"error: --input={tmp_path / 'no.png'}: no such file or folder")
  assert _line(experiment.parse_sweep, "batch_size", config) == (
      "error: --sweep='batch_size': expected field=value1,value2,...")


def test_permission_errors_name_the_path(tmp_path):
  folder = tmp_path / "locked"
  folder.mkdir()
  with read_only(str(folder)), permissions_enforced():
    line = _line(os.makedirs, str(folder / "out"))
  assert line == f"error: [Errno 13] Permission denied: '{folder / 'out'}'"


@pytest.mark.parametrize("content, match", [
    (None, r"--torch_weights=.*missing\.pth: no such file"),
    (b"not a pickle", r"--torch_weights=.*bad\.pth: not a readable PyTorch file"),
])
def test_convert_names_the_weights_file(tmp_path, content, match):
  path = tmp_path / ("missing.pth" if content is None else "bad.pth")
  if content is not None:
    path.write_bytes(content)
  line = _line(convert.convert_file, str(path), str(tmp_path / "out.npz"))
  assert line.startswith("error: ") and "\n" not in line
  assert __import__("re").search(match, line), line
  assert not os.path.exists(tmp_path / "out.npz")


def test_unknown_errors_keep_their_traceback():
  with pytest.raises(TypeError):  # raised inside JAX: not a known user error
    errors.as_messages(lambda argv: jnp.zeros(3) + jnp.zeros(4), [])
  with pytest.raises(ValueError, match="kept"):  # a known error with --traceback / -v 1
    errors.as_messages(lambda argv: pipeline.dataset("kept"), [], show_frames=lambda: True)
  with pytest.raises(KeyError):
    errors.as_messages(lambda argv: {}["x"], [])


def _command(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                        env=env, timeout=300)


def test_commands_print_one_line(tmp_path):
  done = _command("fcnjax.commands.convert", f"--torch_weights={tmp_path / 'missing.pth'}")
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
  assert done.stderr.strip().splitlines()[-1] == (
      f"error: --torch_weights={tmp_path / 'missing.pth'}: no such file (a torchvision "
      "vgg16 .pth, e.g. vgg16-397923af.pth)")
  done = _command("fcnjax.commands.train", "--config=fcn8s_shapes",
                  "--config.data.tfds_config=huge", f"--config.data.data_dir={tmp_path / 'tfds'}",
                  f"--workdir={tmp_path / 'w'}", "--traceback")
  assert done.returncode == 1 and "Traceback" in done.stderr  # --traceback shows the frames
  assert done.stderr.strip().splitlines()[-1].endswith(
      "config.data.tfds_config='huge': the 'shapes' dataset has the configs "
      "['default', 'tiny', 'small', 'study']")
  assert not os.path.exists(tmp_path / "w")
