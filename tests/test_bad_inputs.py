"""Bad inputs to the entry points, called in process (train, evaluate,
predict, ablate, convert, the checkpoint API, the command-line helpers).

Each case is refused with an error (or exit status) naming the field or the
file, and the checkpoints and config.json of one trained workdir, shared by
the whole module, are byte-identical afterwards (`untouched`)."""
import hashlib
import os
import re
import shutil

import numpy as np
import pytest

from fcnjax import inference
from fcnjax.commands import convert, predict
from fcnjax.runtime import cli, peers
from fcnjax.studies import experiment, study
from fcnjax.data import pipeline
from fcnjax.train import checkpoint, loop, params_io
import lock_holder
from test_train import tiny_config
from unwritable import read_only


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
  """A workdir trained 6 steps (checkpoints 3 and 6): what no case may change."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  loop.train_and_evaluate(tiny_config(data_dir), workdir)
  return workdir


def _hashes(workdir):
  """{relative path: sha256} of W/config.json and every file in W/checkpoints."""
  paths = [os.path.join(workdir, "config.json")]
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints")):
    paths += [os.path.join(root, f) for f in files]
  out = {}
  for path in paths:
    with open(path, "rb") as f:
      out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


@pytest.fixture
def untouched(trained):
  before = _hashes(trained)
  assert len(before) > 10  # checkpoint files are there to compare
  yield trained
  assert _hashes(trained) == before
  assert not os.path.exists(os.path.join(trained, ".lock"))


def _refused(error, match, call, *args, **kwargs):
  with pytest.raises(error) as e:
    call(*args, **kwargs)
  assert re.search(match, str(e.value)), str(e.value)
  return str(e.value)


# --- train on the trained workdir -------------------------------------------

@pytest.mark.parametrize("fields, match", [
    ({"num_train_steps": -5}, r"config\.num_train_steps=-5"),
    ({"keep_checkpoints": 0, "num_train_steps": 9}, r"config\.keep_checkpoints=0"),
    ({"eval_every_steps": 0}, r"config\.eval_every_steps=0"),
    ({"batch_size": 12}, r"config\.batch_size=12 is not divisible by the 8 devices"),
    ({"data.scale_range": (2.0,)}, r"config\.data\.scale_range=\(2\.0,\)"),
    ({"num_classes": 3}, r"config\.num_classes=3 but dataset 'shapes' has"),
    ({"data.name": "coco"}, r"config\.data\.name='coco'"),
    ({"model.variant": "32s"}, r"model\.variant: checkpoint '8s', config '32s'"),
    ({"model.upsample": "bilinear"}, r"model\.upsample: checkpoint '\w+', config 'bilinear'"),
])
def test_train_refuses(data_dir, untouched, fields, match):
  _refused(ValueError, match, loop.train_and_evaluate, tiny_config(data_dir, **fields),
           untouched)


def test_train_refuses_a_workdir_in_use(data_dir, untouched):
  try:
    with lock_holder.holding(untouched) as other:
      _refused(RuntimeError, rf"{re.escape(untouched)} is in use .*pid {other.pid}",
               loop.train_and_evaluate, tiny_config(data_dir, num_train_steps=9), untouched)
  finally:
    os.remove(os.path.join(untouched, ".lock"))  # left by the killed holder


def test_train_stops_on_unwritable_checkpoints(data_dir, untouched):
  directory = os.path.join(untouched, "checkpoints")
  with read_only(directory):
    _refused(RuntimeError, rf"in {re.escape(directory)} failed \(PermissionError",
             loop.train_and_evaluate, tiny_config(data_dir, num_train_steps=9), untouched)


def test_train_on_a_workdir_that_is_a_file(data_dir, untouched, tmp_path):
  path = tmp_path / "w"
  path.write_text("a file")
  _refused(OSError, re.escape(str(path)), loop.train_and_evaluate, tiny_config(data_dir),
           str(path))


@pytest.mark.parametrize("kind", ["missing", "text", "empty_dir", "unrelated_npz"])
def test_init_from_bad_source(data_dir, untouched, tmp_path, kind):
  source = str(tmp_path / ("src.npz" if kind != "empty_dir" else "src"))
  if kind == "text":
    open(source, "w").write("not an npz")
  elif kind == "empty_dir":
    os.makedirs(source)
  elif kind == "unrelated_npz":
    np.savez(source, **{"other/kernel": np.zeros(3)})
  error, match = {"missing": (FileNotFoundError, "is neither a workdir nor a .npz"),
                  "text": (ValueError, "not a params .npz"),
                  "empty_dir": (FileNotFoundError, "no checkpoint in"),
                  "unrelated_npz": (ValueError, "no parameter matched the model")}[kind]
  message = _refused(error, match, loop.train_and_evaluate,
                     tiny_config(data_dir, init_from=source), str(tmp_path / "new"))
  assert os.path.basename(source) in message


def test_init_from_a_run_of_another_model(data_dir, untouched, tmp_path):
  config = tiny_config(data_dir, init_from=untouched, **{
      "model.name": "segnet", "model.backbone": "tiny", "data.crop_size": 32})
  _refused(ValueError, rf"config\.init_from={re.escape(repr(untouched))}: no parameter",
           loop.train_and_evaluate, config, str(tmp_path / "segnet"))


def test_init_from_an_fcn_run_gives_segnet_its_encoder(data_dir, untouched):
  """SegNet on the FCN run's backbone shares its encoder layers (one VGGBackbone):
  init_from copies exactly those, and leaves the decoder as initialised."""
  import jax
  from fcnjax.train import assemble
  config = tiny_config(data_dir, **{"model.name": "segnet", "data.crop_size": 32})
  state, _ = assemble.create_state(
      config, assemble.build_model(config, pipeline.get_info(config.data)), jax.random.key(0))
  loaded = assemble.load_init(state, untouched)
  fcn = checkpoint.restore_params(untouched, which="best")
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)
                       for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  got, want, fresh = flat(loaded.params), flat(fcn), flat(state.params)
  encoder = [k for k in got if k.startswith("['backbone']")]
  assert encoder and all(k in want for k in encoder)  # conv{s}_{i}, bn{s}_{i}
  for k in got:
    np.testing.assert_array_equal(got[k], want[k] if k in encoder else fresh[k])


# --- evaluate ------------------------------------------------------------------

@pytest.mark.parametrize("fields, match", [
    ({"model.variant": "16s"}, r"model\.variant: checkpoint '8s', config '16s'"),
    ({"eval_batch_size": 12}, r"config\.eval_batch_size=12 is not divisible"),
    ({"num_classes": 5}, r"config\.num_classes=5 but dataset"),
])
def test_evaluate_refuses(data_dir, untouched, fields, match):
  _refused(ValueError, match, inference.evaluate_workdir, tiny_config(data_dir, **fields),
           untouched)
  assert not os.path.exists(os.path.join(untouched, "eval"))


def test_evaluate_refuses_an_unknown_checkpoint_choice(data_dir, untouched):
  _refused(ValueError, r"which='newest'; valid", inference.evaluate_workdir,
           tiny_config(data_dir), untouched, which="newest")


@pytest.mark.parametrize("kind", ["missing", "empty", "checkpoints_is_a_file"])
def test_evaluate_without_checkpoints_creates_nothing(data_dir, untouched, tmp_path, kind):
  workdir = tmp_path / "w"
  if kind != "missing":
    workdir.mkdir()
  if kind == "checkpoints_is_a_file":
    (workdir / "checkpoints").write_text("a file")
  before = sorted(os.listdir(tmp_path))
  _refused(FileNotFoundError, rf"no checkpoint in {re.escape(str(workdir / 'checkpoints'))}",
           inference.evaluate_workdir, tiny_config(data_dir), str(workdir))
  assert sorted(os.listdir(tmp_path)) == before
  if kind != "missing":
    assert sorted(os.listdir(workdir)) == ([] if kind == "empty" else ["checkpoints"])


def test_evaluate_with_every_checkpoint_corrupt_names_them(data_dir, untouched, tmp_path):
  workdir = shutil.copytree(untouched, str(tmp_path / "copy"))
  for step in ("3", "6"):
    for root, _, files in os.walk(os.path.join(workdir, "checkpoints", step)):
      for name in files:
        if os.path.basename(root) == "d":  # the array data files
          with open(os.path.join(root, name), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(root, name)) // 2)
  _refused(RuntimeError, r"no readable checkpoint in .*copy/checkpoints \(tried steps "
           r"\[\d, \d\]\)", inference.evaluate_workdir, tiny_config(data_dir), workdir)


# --- predict -------------------------------------------------------------------

def test_predict_missing_input(data_dir, untouched, tmp_path):
  _refused(FileNotFoundError, rf"--input={re.escape(str(tmp_path / 'nope.png'))}: no such",
           predict.predict, tiny_config(data_dir), untouched, str(tmp_path / "nope.png"),
           str(tmp_path / "out"))


def test_predict_folder_without_images(data_dir, untouched, tmp_path):
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "notes.txt").write_text("x")
  _refused(FileNotFoundError, r"--input=.*/in: no \(.*\) images in the folder",
           predict.predict, tiny_config(data_dir), untouched, str(tmp_path / "in"),
           str(tmp_path / "out"))


def test_predict_folder_of_unreadable_files_exits_1(data_dir, untouched, tmp_path, capsys):
  folder = tmp_path / "in"
  folder.mkdir()
  (folder / "x.png").write_text("not an image")
  (folder / "y.jpg").mkdir()  # a folder with an image suffix
  status = predict.predict(tiny_config(data_dir), untouched, str(folder), str(tmp_path / "o"),
                           which="latest")
  assert status == 1
  assert "0 predicted, 2 skipped (unreadable: x.png, y.jpg)" in capsys.readouterr().err
  assert os.listdir(tmp_path / "o") == []


def test_predict_with_the_wrong_config(data_dir, untouched, tmp_path):
  image = tmp_path / "a.png"
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  _refused(ValueError, r"model\.variant: checkpoint '8s', config '32s'", predict.predict,
           tiny_config(data_dir, **{"model.variant": "32s"}), untouched, str(image),
           str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


def test_predict_into_an_output_that_is_a_file(data_dir, untouched, tmp_path):
  image, out = tmp_path / "a.png", tmp_path / "out"
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  out.write_text("a file")
  _refused(FileExistsError, re.escape(str(out)), predict.predict, tiny_config(data_dir),
           untouched, str(image), str(out), which="latest")


# --- ablate, convert, checkpoints API, command-line helpers ----------------------

def test_ablate_refuses_an_invalid_point_before_training(data_dir, untouched, tmp_path):
  sweeps = [experiment.parse_sweep("batch_size=8,0", tiny_config(data_dir))]
  _refused(ValueError, r"run batch_size=0,seed=0: config\.batch_size=0", study.run_grid,
           tiny_config(data_dir), str(tmp_path / "ab"), sweeps)
  assert not os.path.exists(tmp_path / "ab" / "batch_size=8,seed=0")


def test_ablate_refuses_a_field_the_model_ignores(data_dir, untouched, tmp_path):
  config = tiny_config(data_dir, **{"model.name": "segnet"})
  sweeps = [experiment.parse_sweep("model.variant=32s,8s", config)]
  _refused(ValueError, r"ignores model\.variant='32s'", study.run_grid, config,
           str(tmp_path / "ab"), sweeps)


def test_ablate_refuses_repeated_points(data_dir, untouched, tmp_path):
  for sweeps in ([("seed", [1, 1])], [("batch_size", [8, 8])]):
    _refused(ValueError, "two runs have the same name", study.run_grid,
             tiny_config(data_dir), str(tmp_path), sweeps)


def test_convert_names_a_folder_given_as_params(untouched, tmp_path):
  (tmp_path / "vgg16.npz").mkdir()
  _refused(ValueError, r"vgg16\.npz: not a params \.npz", params_io.load_npz,
           str(tmp_path / "vgg16.npz"))


def test_checkpoints_refuse_keep_below_one(untouched):
  _refused(ValueError, r"config\.keep_checkpoints=-1", checkpoint.Checkpoints, untouched,
           keep=-1)


def test_restore_params_of_a_missing_workdir(untouched, tmp_path):
  _refused(FileNotFoundError, rf"no checkpoint in {re.escape(str(tmp_path / 'x'))}",
           checkpoint.restore_params, str(tmp_path / "x"))
  assert not os.path.exists(tmp_path / "x")


def test_unknown_packaged_config(untouched):
  _refused(ValueError, r"--config=fcn9s_shapes: no such file or packaged config",
           cli.resolve_config, ["prog", "--config=fcn9s_shapes"])


def test_peer_timeout_below_one_second(untouched):
  _refused(ValueError, r"--peer_timeout=0: must be at least 1", peers.initialize,
           "127.0.0.1:1", 2, 0, peer_timeout=0)


def test_read_rgb_names_a_truncated_png(untouched, tmp_path):
  from PIL import Image
  Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(tmp_path / "t.png")
  data = (tmp_path / "t.png").read_bytes()
  (tmp_path / "t.png").write_bytes(data[:len(data) // 2])
  _refused(ValueError, r"t\.png: not a readable image", inference.read_rgb,
           str(tmp_path / "t.png"))


# --- what the entry points print: one 'error: ...' line (fcnjax.runtime.errors) ----------

def _bad_weights(tmp_path):
  (tmp_path / "bad.pth").write_text("not torch")
  return str(tmp_path / "bad.pth")


ONE_LINE_CASES = {
    "config/checkpoint mismatch": (
        lambda d, w, t: inference.evaluate_workdir(
            tiny_config(d, **{"model.variant": "16s"}), w),
        r"model\.variant: checkpoint '8s', config '16s'"),
    "tfds_config": (
        lambda d, w, t: loop.train_and_evaluate(
            tiny_config(d, **{"data.tfds_config": "huge"}), w),
        r"config\.data\.tfds_config='huge': the 'shapes' dataset has the configs"),
    "eval split": (
        lambda d, w, t: loop.train_and_evaluate(
            tiny_config(d, **{"data.eval_split": "selectoin"}), w),
        r"split 'selectoin' \(config\.data\.train_split / eval_split\): Unknown split"),
    "missing input": (
        lambda d, w, t: predict.predict(tiny_config(d), w, str(t / "nope.jpg")),
        r"--input=.*nope\.jpg: no such file or folder"),
    "sweep syntax": (
        lambda d, w, t: experiment.parse_sweep("seed:1,2", tiny_config(d)),
        r"--sweep='seed:1,2': expected field=value1,value2"),
    "unwritable checkpoints": (
        lambda d, w, t: _train_read_only(d, w),
        r"checkpoints failed \(PermissionError"),
    "missing torch weights": (
        lambda d, w, t: convert.convert_file(str(t / "missing.pth"), str(t / "o.npz")),
        r"--torch_weights=.*missing\.pth: no such file"),
    "unreadable torch weights": (
        lambda d, w, t: convert.convert_file(_bad_weights(t), str(t / "o.npz")),
        r"--torch_weights=.*bad\.pth: not a readable PyTorch file"),
}


def _train_read_only(data_dir, workdir):
  with read_only(os.path.join(workdir, "checkpoints")):
    loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=9), workdir)


@pytest.mark.parametrize("case", sorted(ONE_LINE_CASES))
def test_entry_point_errors_are_one_line(data_dir, untouched, tmp_path, case):
  from fcnjax.runtime import errors
  call, match = ONE_LINE_CASES[case]
  with pytest.raises(SystemExit) as e:
    errors.as_messages(lambda argv: call(data_dir, untouched, tmp_path), [])
  line = str(e.value.code)
  assert line.startswith("error: ") and "\n" not in line and re.search(match, line), line
  assert not os.path.exists(tmp_path / "o.npz")
