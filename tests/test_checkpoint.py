"""Checkpoints: one manager (latest N + best mIoU), self-description, refusal of
keep < 1, corrupt newest step, workdir lock, NaN message, init from a run,
an unwritable checkpoint directory."""
import glob
import json
import os
import re
import shutil
import socket
import time
import types

import jax
import numpy as np
import pytest

from fcnjax import inference
from fcnjax.data import pipeline, shapes
from fcnjax.train import assemble, checkpoint, description, lock, loop
import lock_holder
from test_train import tiny_config
from unwritable import read_only

FAKE_INFO = types.SimpleNamespace(num_classes=4, class_names=("a", "b", "c", "d"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """A workdir trained 6 steps: checkpoints at 3 and 6, both with eval scores."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  loop.train_and_evaluate(tiny_config(data_dir), workdir)
  return workdir


def _state(config, info=FAKE_INFO):
  return assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))[0]


def _copy(workdir, tmp_path):
  return shutil.copytree(workdir, str(tmp_path / "copy"))


def _snapshot(directory):
  """{relative path: bytes} of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_one_manager_keeps_latest_and_best(tmp_path):
  state = _state(tiny_config(tmp_path))
  workdir = str(tmp_path / "w")
  scores = {2: 0.9, 4: 0.1, 5: float("nan"), 6: 0.2}
  ckpt = checkpoint.Checkpoints(workdir, keep=2)
  for step in range(1, 7):
    shifted = state.replace(step=step, params=jax.tree.map(lambda x: x + step, state.params))
    ckpt.save(step, shifted, {"mean_iou": scores[step]} if step in scores else None)
  ckpt.close()
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "5", "6"]
  assert not os.path.exists(os.path.join(workdir, "best"))
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  for which, step in (("latest", 6), ("best", 2)):
    restored = checkpoint.restore_state(workdir, state, which=which)
    assert int(restored.step) == step
    for a, b in zip(_leaves(restored), _leaves(state)):
      np.testing.assert_array_equal(a, b + step)
  # The best step's score is on disk: it outlives newer steps without scores.
  ckpt = checkpoint.Checkpoints(workdir, keep=2)
  assert ckpt.metrics(2) == {"mean_iou": 0.9}
  for step in (7, 8):
    ckpt.save(step, state.replace(step=step))
  ckpt.close()
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "7", "8"]
  assert glob.glob(os.path.join(workdir, "**", "*orbax-checkpoint-tmp*"), recursive=True) == []


def test_best_falls_back_to_latest_without_scores(tmp_path):
  state = _state(tiny_config(tmp_path))
  ckpt = checkpoint.Checkpoints(str(tmp_path / "w"), keep=3)
  for step in (1, 2):
    ckpt.save(step, state.replace(step=step))
  ckpt.close()
  assert int(checkpoint.restore_state(str(tmp_path / "w"), state, which="best").step) == 2


def test_checkpoint_describes_itself_and_a_wrong_config_is_named(data_dir, trained):
  saved = checkpoint.saved_config(trained)
  with open(os.path.join(trained, "config.json")) as f:
    assert saved["config"] == json.load(f)
  assert saved["model"] == tiny_config(data_dir).model.to_dict()
  assert saved["class_names"] == list(shapes.CLASS_NAMES)
  assert saved["num_classes"] == len(shapes.CLASS_NAMES)
  wrong = tiny_config(data_dir, **{"model.variant": "32s", "model.upsample": "bilinear"})
  with pytest.raises(ValueError) as e:
    inference.restore(wrong, trained, which="latest")
  message = str(e.value)
  assert "model.variant: checkpoint '8s', config '32s'" in message
  assert "model.upsample" in message and "model.backbone" not in message
  assert description.mismatches(saved, {**saved, "num_classes": 3}) == [
      f"num_classes: checkpoint {len(shapes.CLASS_NAMES)}, config 3"]


def test_missing_workdir_is_reported_and_not_created(tmp_path):
  missing = str(tmp_path / "nothing")
  assert checkpoint.saved_config(missing) is None
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    checkpoint.restore_state(missing, _state(tiny_config(tmp_path)))
  assert not os.path.exists(missing)


def test_keep_checkpoints_below_one_is_refused_and_deletes_nothing(data_dir, trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  config = tiny_config(data_dir, keep_checkpoints=0, num_train_steps=9)
  with pytest.raises(ValueError, match=r"config\.keep_checkpoints=0"):
    loop.train_and_evaluate(config, workdir)
  assert _snapshot(os.path.join(workdir, "checkpoints")) == before
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  assert not os.path.exists(os.path.join(workdir, ".lock"))


def _truncate_data_files(step_dir):
  """Halves every array data file of a saved step; returns how many."""
  files = glob.glob(os.path.join(step_dir, "**", "d", "*"), recursive=True)
  for path in files:
    os.truncate(path, os.path.getsize(path) // 2)
  return len(files)


def test_corrupt_newest_checkpoint_is_skipped(data_dir, trained, tmp_path, caplog):
  config = tiny_config(data_dir)
  info = pipeline.get_info(config.data)
  template = _state(config, info)
  ckpt = checkpoint.Checkpoints(trained, read_only=True)
  step3, step6 = (ckpt.restore(template, step=s) for s in (3, 6))
  ckpt.close()
  workdir = _copy(trained, tmp_path)
  newest = os.path.join(workdir, "checkpoints", "6")
  assert _truncate_data_files(newest) > 0
  results = inference.evaluate_workdir(config, workdir, which="latest")
  assert results["step"] == 3
  assert any(newest in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
  # Resuming trains 4..6 from the intact step 3: the same params as before the damage.
  loop.train_and_evaluate(config, workdir)
  resumed = checkpoint.restore_state(workdir, template, which="latest")
  assert int(resumed.step) == 6
  for a, b, c in zip(_leaves(resumed), _leaves(step6), _leaves(step3)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(b, c) for b, c in zip(_leaves(step6), _leaves(step3)))
  assert os.listdir(os.path.join(workdir, "corrupt_checkpoints")) == ["6"]


def test_lock_refuses_a_second_training(data_dir, trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  with lock_holder.holding(workdir) as other:
    with pytest.raises(RuntimeError, match=rf"{re.escape(workdir)} is in use .*pid {other.pid}"):
      loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=9), workdir)
    with open(os.path.join(workdir, ".lock")) as f:
      assert f.read().split() == [str(other.pid), socket.gethostname()]
  assert _snapshot(os.path.join(workdir, "checkpoints")) == before
  # In one process: the lock holds our pid while open and is gone after close().
  fresh = str(tmp_path / "fresh")
  ckpt = checkpoint.Checkpoints(fresh)
  with open(os.path.join(fresh, ".lock")) as f:
    assert int(f.read().split()[0]) == os.getpid()
  with pytest.raises(RuntimeError, match=f"pid {os.getpid()}"):
    checkpoint.Checkpoints(fresh)
  ckpt.close()
  assert not os.path.exists(os.path.join(fresh, ".lock"))


def test_lock_of_a_killed_training_is_taken_over_and_removed(data_dir, trained, tmp_path,
                                                             caplog):
  workdir = _copy(trained, tmp_path)
  with lock_holder.holding(workdir) as other:
    other.kill()  # SIGKILL: no chance to release; the kernel drops its flock
    other.wait()
    loop.train_and_evaluate(tiny_config(data_dir), workdir)  # already at step 6: no training
  assert any("stale lock" in r.getMessage() and str(other.pid) in r.getMessage()
             for r in caplog.records)
  assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_two_racing_starts_one_takes_the_lock(tmp_path):
  workdir = str(tmp_path / "race")
  with lock_holder.holders(workdir, 2) as started:
    winners = [p for p, report in started if report == "held"]
    assert len(winners) == 1, started
    for p, report in started:
      if p is not winners[0]:
        assert re.fullmatch(rf"refused: {re.escape(workdir)} is in use by another training "
                            rf"\(pid {winners[0].pid} on .*", report), report
  # All gone (the winner killed holding it): a new start takes the lock, and
  # removes the file when it releases it.
  path = lock.acquire_lock(workdir)
  with open(path) as f:
    assert int(f.read().split()[0]) == os.getpid()
  lock.release_lock(path)
  assert not os.path.exists(path)


def test_nonfinite_message_names_the_newest_checkpoint(data_dir, tmp_path):
  explode = {"optimizer.name": "sgd", "optimizer.learning_rate": 1e8,
             "num_train_steps": 40, "eval_every_steps": 1000}
  config = tiny_config(data_dir, checkpoint_every_steps=1, **explode)
  with pytest.raises(FloatingPointError) as e:
    loop.train_and_evaluate(config, str(tmp_path / "a"))
  step = int(re.search(r"at step (\d+)", str(e.value)).group(1))
  assert step > 1, "the first step already diverged: pick a smaller learning rate"
  assert f"the newest checkpoint is step {step - 1} in" in str(e.value)
  info = pipeline.get_info(config.data)
  restored = checkpoint.restore_state(str(tmp_path / "a"), _state(config, info))
  assert int(restored.step) == step - 1
  config = tiny_config(data_dir, checkpoint_every_steps=1000, **explode)
  with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
    loop.train_and_evaluate(config, str(tmp_path / "b"))


def test_init_from_a_workdir_of_another_variant(tmp_path):
  source = _state(tiny_config(tmp_path, **{"model.variant": "32s"}))
  ckpt = checkpoint.Checkpoints(str(tmp_path / "fcn32s"))
  ckpt.save(1, source.replace(step=1))
  ckpt.close()
  target = _state(tiny_config(tmp_path, **{"model.variant": "8s"}), FAKE_INFO)
  target = target.replace(params=jax.tree.map(lambda x: x * 0 - 7, target.params))
  merged = assemble.load_init(target, str(tmp_path / "fcn32s"))
  src = {jax.tree_util.keystr(k): v for k, v in
         jax.tree_util.tree_flatten_with_path(source.params)[0]}
  copied = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(merged.params)[0]:
    key = jax.tree_util.keystr(path)
    if key in src and np.shape(src[key]) == np.shape(leaf):
      np.testing.assert_array_equal(leaf, src[key])
      copied += 1
    else:
      assert np.all(np.asarray(leaf) == -7), key
  assert copied > 0 and copied < len(jax.tree.leaves(merged.params))


def test_unwritable_checkpoints_stop_training_at_once(data_dir, trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  directory = os.path.join(workdir, "checkpoints")
  before = _snapshot(directory)
  start = time.time()
  with read_only(directory), pytest.raises(RuntimeError) as e:
    loop.train_and_evaluate(tiny_config(data_dir, num_train_steps=9), workdir)
  assert time.time() - start < 60
  assert f"in {directory} failed (PermissionError" in str(e.value)
  assert "training stopped" in str(e.value)
  assert _snapshot(directory) == before
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  # Mid-run: the directory becomes unwritable after a first save.
  fresh = str(tmp_path / "fresh")
  state = _state(tiny_config(data_dir))
  ckpt = checkpoint.Checkpoints(fresh)
  ckpt.save(1, state.replace(step=1))
  ckpt.manager.wait_until_finished()
  fresh_dir = os.path.join(fresh, "checkpoints")
  with read_only(fresh_dir), pytest.raises(RuntimeError, match=re.escape(
      f"saving step 2 in {fresh_dir} failed (PermissionError")):
    ckpt.save(2, state.replace(step=2))
  ckpt.close()
  assert os.listdir(fresh_dir) == ["1"]
  restored = checkpoint.restore_state(fresh, state)
  assert int(restored.step) == 1
