"""Two processes through the real command line: train (with eval and
checkpoints), then evaluate; both finish and leave no unfinished checkpoint.
A peer killed mid-training stops the survivor, with a message naming it."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from fcnjax.data import pipeline
from test_multihost import BIND_FAILURES, _free_port, run_two_processes, two_process_env
from test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "fcnjax", "configs", "fcn8s_shapes.py")
TINY = {"data.tfds_config": "tiny", "data.crop_size": 32, "batch_size": 8,
        "eval_batch_size": 8, "num_train_steps": 4, "log_every_steps": 2,
        "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0,
        "optimizer.schedule": "constant", "model.backbone": "tiny"}


def _command(module, workdir, data_dir, extra=(), **fields):
  fields = {**TINY, "data.data_dir": data_dir, **fields}
  overrides = [f"--config.{k}={v}" for k, v in fields.items()]
  return lambda port, i: [
      sys.executable, "-m", module, f"--config={CONFIG}", f"--workdir={workdir}",
      f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
      *overrides, *extra]


def test_two_process_train_then_evaluate(tmp_path):
  data_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "run")
  pipeline.get_info(tiny_config(data_dir).data)  # prepared once, not by both processes
  env = two_process_env()  # one CPU device per process
  codes, logs = run_two_processes(_command("fcnjax.commands.train", workdir, data_dir), env)
  assert codes == [0, 0], "\n".join(log[-4000:] for log in logs)
  assert glob.glob(os.path.join(workdir, "**", "*orbax-checkpoint-tmp*"), recursive=True) == []
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  assert not os.path.exists(os.path.join(workdir, ".lock"))

  codes, logs = run_two_processes(
      _command("fcnjax.commands.evaluate", workdir, data_dir, ["--checkpoint=best"]), env)
  assert codes == [0, 0], "\n".join(log[-4000:] for log in logs)
  assert glob.glob(os.path.join(workdir, "**", "*orbax-checkpoint-tmp*"), recursive=True) == []
  # The best step and its score are those the training recorded at its evaluations.
  with open(os.path.join(workdir, "history.json")) as f:
    evals = json.load(f)["eval_mean_iou"]
  assert [step for step, _ in evals] == [2, 4]
  best_step, best_iou = max(evals, key=lambda p: (p[1], p[0]))
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    results = json.load(f)
  assert results["step"] == best_step
  np.testing.assert_allclose(results["mean_iou"], best_iou, rtol=1e-5)


def _wait_for(path, text, process, timeout):
  """Waits until the file at `path` contains `text` (False if `process` ends first)."""
  deadline = time.time() + timeout
  while time.time() < deadline and process.poll() is None:
    with open(path, errors="replace") as f:
      if text in f.read():
        return True
    time.sleep(0.5)
  return False


def _start_pair(make_command, env, logs):
  """Processes 0 and 1 on a free port (retried when the coordinator cannot bind)."""
  for _ in range(3):
    port = _free_port()
    procs = [subprocess.Popen(make_command(port, i), env=env, stdout=open(logs[i], "w"),
                              stderr=subprocess.STDOUT) for i in range(2)]
    if not _wait_for(logs[1], " from step 0 to ", procs[1], timeout=300):
      for p in procs:
        p.kill()
        p.wait()
      with open(logs[0], errors="replace") as f:
        if any(m in f.read() for m in BIND_FAILURES):
          continue
      pytest.fail("process 1 did not start training:\n" + open(logs[1]).read()[-3000:])
    return procs
  pytest.fail("the coordinator could not bind a free port in 3 tries")


def _kill_one(tmp_path, killed):
  """Starts an endless 2-process training, kills process `killed` once both
  train, and returns the survivor's (exit status, seconds to exit, log)."""
  data_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "run")
  pipeline.get_info(tiny_config(data_dir).data)
  env = two_process_env()
  endless = {"num_train_steps": 100000, "eval_every_steps": 100000,
             "checkpoint_every_steps": 100000, "log_every_steps": 1000}
  command = _command("fcnjax.commands.train", workdir, data_dir, ["--peer_timeout=5"], **endless)
  logs = [str(tmp_path / f"log{i}.txt") for i in range(2)]
  procs = _start_pair(command, env, logs)
  survivor = 1 - killed
  procs[killed].kill()
  procs[killed].wait()
  killed_at = time.time()
  try:
    code = procs[survivor].wait(timeout=120)
  except subprocess.TimeoutExpired:
    procs[survivor].kill()
    procs[survivor].wait()
    pytest.fail("the survivor still runs 120 s after its peer was killed:\n"
                + open(logs[survivor]).read()[-3000:])
  with open(logs[survivor], errors="replace") as f:
    return code, time.time() - killed_at, f.read()


def test_killed_peer_stops_the_survivor_with_its_name(tmp_path):
  code, elapsed, log = _kill_one(tmp_path, killed=1)
  assert code == 1, log[-3000:]
  assert "fcnjax: process 1 of 2 vanished (no heartbeat for 5 s); process 0 stops here" in log
  assert elapsed < 60, elapsed
  assert "Terminating process because the JAX distributed service" not in log


def test_killed_coordinator_stops_the_survivor_at_once(tmp_path):
  """Process 0 holds the coordination service: when it dies, JAX's client in
  the survivor ends the process itself (abort) before any watchdog can speak;
  its message names the leader task. The exit is bounded and non-zero."""
  code, elapsed, log = _kill_one(tmp_path, killed=0)
  assert code != 0, log[-3000:]
  assert elapsed < 60, elapsed
  assert ("leader task was preempted/died" in log
          or "fcnjax: process 0 of 2 vanished (" in log), log[-3000:]
