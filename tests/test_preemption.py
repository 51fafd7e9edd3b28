"""Stop signals and full disks, in one process: a signal mid-training saves
exactly that step and the resumed run is bit-identical to an uninterrupted
one (params, history.json, TensorBoard); a second signal during that save
does not interrupt it; a disk that fills during a save stops the run within
its bound with the older checkpoints intact, and the next run resumes from them."""
import json
import os
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from fcnjax.data import pipeline
from fcnjax.train import checkpoint, loop, preemption
from test_train import _tensorboard_scalars, tiny_config

TAGS = ("train_loss", "learning_rate", "eval_mean_iou")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def _config(data_dir, **overrides):
  return tiny_config(data_dir, **{"model.backbone": "tiny", **overrides})


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """An uninterrupted 6-step run: logs at 2, 3, 4, 6; eval and checkpoints at 3, 6."""
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  loop.train_and_evaluate(_config(data_dir), workdir)
  return workdir


def _at_step(monkeypatch, step, action):
  """Runs `action()` as the batch of `step` is drawn (before that step runs)."""
  real = pipeline.train_batches

  def batches(*args, start_step=0, **kwargs):
    for i, batch in enumerate(real(*args, start_step=start_step, **kwargs), start_step + 1):
      if i == step:
        action()
      yield batch
  monkeypatch.setattr(pipeline, "train_batches", batches)


def _kill_self(sig):
  return lambda: os.kill(os.getpid(), sig)


def _params(workdir):
  tree = checkpoint.Checkpoints(workdir, read_only=True)
  try:
    return tree.restore_numpy("latest")
  finally:
    tree.close()


def _assert_same_run(a, b):
  """Same final state (every leaf bit for bit), history.json and TensorBoard scalars."""
  ta, tb = _params(a), _params(b)
  assert int(ta["step"]) == int(tb["step"])
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(ta)[0], jax.tree.leaves(tb)):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
  histories = []
  for w in (a, b):
    with open(os.path.join(w, "history.json")) as f:
      histories.append(json.load(f))
  assert histories[0] == histories[1]
  for tag in TAGS:
    assert _tensorboard_scalars(a, tag) == _tensorboard_scalars(b, tag), tag


def test_signal_saves_that_step_and_the_resume_is_bit_exact(data_dir, straight, tmp_path,
                                                           monkeypatch, capfd):
  workdir = str(tmp_path / "run")
  config = _config(data_dir)
  real_save = checkpoint.Checkpoints.save
  # what the run must restore (SIGINT is ignored, not Python's handler, under nohup / '&')
  before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGINT)}

  def save_under_fire(self, step, *args, **kwargs):  # a second signal during the save
    if step == 5:
      os.kill(os.getpid(), signal.SIGINT)
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpoints, "save", save_under_fire)
  _at_step(monkeypatch, 5, _kill_self(signal.SIGUSR1))  # step 5: inside the window 5-6
  with pytest.raises(preemption.Stopped) as stopped:
    loop.train_and_evaluate(config, workdir)
  assert (stopped.value.signal_name, stopped.value.step) == ("SIGUSR1", 5)
  assert f"{workdir}/checkpoints/5;" in str(stopped.value)
  err = capfd.readouterr().err
  assert "fcnjax: SIGUSR1 received: stopping after the current step" in err
  assert "SIGINT received while saving step 5: the save finishes first" in err
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "5"]
  assert int(_params(workdir)["step"]) == 5
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
  monkeypatch.undo()
  loop.train_and_evaluate(config, workdir)  # the same command again
  _assert_same_run(workdir, straight)


def test_signal_during_start_up_stops_before_the_first_step(data_dir, tmp_path, monkeypatch):
  """A signal that arrives before training starts: step 0 is saved, nothing trained."""
  real = loop._train

  def late(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
  monkeypatch.setattr(loop, "_train", late)
  workdir = str(tmp_path / "run")
  with pytest.raises(preemption.Stopped, match="stopped by SIGTERM at step 0"):
    loop.train_and_evaluate(_config(data_dir), workdir)
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["0"]


def test_stop_signals_are_checked_and_can_be_turned_off():
  assert preemption.parse_signals("TERM, sigusr1") == [signal.SIGTERM, signal.SIGUSR1]
  assert preemption.parse_signals("") == []
  with pytest.raises(ValueError, match=r"config\.stop_signals='SIGKILL': SIGKILL is not"):
    preemption.parse_signals("SIGKILL")


def _mount_tmpfs(directory, size):
  os.makedirs(directory, exist_ok=True)
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory],
                          capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")


def _fill(directory, after, keep_free=64 * 1024):
  """Once the step `after` is committed, writes a file that leaves `keep_free`
  bytes free on `directory`'s filesystem."""
  deadline = time.time() + 60
  while not os.path.isdir(os.path.join(directory, str(after))) and time.time() < deadline:
    time.sleep(0.1)
  stat = os.statvfs(directory)
  free = stat.f_bavail * stat.f_frsize
  with open(os.path.join(directory, "filler"), "wb") as f:
    f.write(b"\0" * max(free - keep_free, 0))


def test_full_disk_stops_within_its_bound_and_the_rerun_resumes(data_dir, straight, tmp_path,
                                                               monkeypatch):
  """W/checkpoints on a 2 MB tmpfs (root only): after step 3 is saved the disk
  fills up, the save of step 6 fails."""
  workdir = str(tmp_path / "run")
  directory = os.path.join(workdir, "checkpoints")
  _mount_tmpfs(directory, "2m")
  try:
    _at_step(monkeypatch, 4, lambda: _fill(directory, after=3))
    start = time.time()
    with pytest.raises(RuntimeError) as error:
      loop.train_and_evaluate(_config(data_dir, checkpoint_timeout_s=20), workdir)
    elapsed = time.time() - start
    assert elapsed < 60, elapsed
    assert re.search(rf"in {re.escape(directory)} failed \(.*(No space|ENOSPC|space)",
                     str(error.value)), str(error.value)
    assert not os.path.exists(os.path.join(workdir, ".lock"))
    assert int(_params(workdir)["step"]) == 3  # the older checkpoint is intact
    monkeypatch.undo()
    os.remove(os.path.join(directory, "filler"))
    loop.train_and_evaluate(_config(data_dir), workdir)  # resumes from step 3
    np.testing.assert_array_equal(_params(workdir)["step"], 6)
    for x, y in zip(jax.tree.leaves(_params(workdir)), jax.tree.leaves(_params(straight))):
      np.testing.assert_array_equal(x, y)
  finally:
    subprocess.run(["umount", "-l", directory], capture_output=True)


def test_signal_in_the_last_step_completes_the_run_and_stops_the_study(data_dir, straight,
                                                                     tmp_path, monkeypatch):
  """A signal too late to end a run early (during its last step): the run
  completes as an uninterrupted one and still raises Stopped, so a study
  starts no further run."""
  from fcnjax.studies import study
  _at_step(monkeypatch, 6, _kill_self(signal.SIGTERM))
  workdir = str(tmp_path / "study")
  arms = {"first": {}, "second": {"optimizer.learning_rate": 2e-3}}
  with pytest.raises(preemption.Stopped,
                     match="after the last step 6: the run is complete") as stopped:
    study.run_arms(_config(data_dir), workdir, arms, seeds=[0], log=lambda line: None)
  assert stopped.value.finished and stopped.value.step == 6
  assert os.listdir(workdir) == ["first,seed=0"]
  monkeypatch.undo()
  _assert_same_run(os.path.join(workdir, "first,seed=0"), straight)
