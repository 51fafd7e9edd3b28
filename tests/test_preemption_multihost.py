"""Two processes through the command line: SIGTERM to both mid-training ends
both at the same step with a checkpoint of it (exit status 75), and the
restarted pair ends bit-identical to an uninterrupted pair (params,
history.json, TensorBoard)."""
import os
import re
import signal
import subprocess
import time

import pytest

from fcnjax.data import pipeline
from test_multihost import run_two_processes, two_process_env
from test_multihost_cli import _command, _start_pair, _wait_for
from test_preemption import _assert_same_run
from test_train import tiny_config

# Long enough (seconds) for a signal sent after the first log to reach
# every process before the last step, however fast the CPU runs the tiny net.
STEPS = 100
FIELDS = {"num_train_steps": STEPS, "log_every_steps": 3, "eval_every_steps": STEPS // 2,
          "checkpoint_every_steps": STEPS // 2, "model.backbone": "tiny"}


def _stop_mid_training(command, env, logs, signals):
  """Starts the pair and, once a step is logged, sends signals[i] to process
  i (None: none), process 1 first; returns (exit statuses, seconds from the
  first signal to the last exit, logs)."""
  procs = _start_pair(command, env, logs)
  try:
    assert _wait_for(logs[0], "] learning_rate=", procs[0], timeout=120), open(logs[0]).read()
    sent = time.time()
    for i in (1, 0):
      if signals[i] is not None:
        procs[i].send_signal(signals[i])
        time.sleep(0.3)
    codes = [p.wait(timeout=120) for p in procs]
    elapsed = time.time() - sent
  except subprocess.TimeoutExpired:
    pytest.fail("a process still runs 120 s after SIGTERM:\n"
                + "\n".join(open(log).read()[-3000:] for log in logs))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  return codes, elapsed, [open(log, errors="replace").read() for log in logs]


def _stopped_steps(logs, signal_text):
  found = [re.search(rf"fcnjax: stopped by {signal_text}.* at step (\d+): saved the "
                     "checkpoint", log) for log in logs]
  assert all(found), "\n".join(log[-2000:] for log in logs)
  return [int(m.group(1)) for m in found]


def test_sigterm_stops_both_processes_and_the_restart_is_bit_exact(tmp_path):
  data_dir = str(tmp_path / "tfds")
  pipeline.get_info(tiny_config(data_dir).data)  # prepared once, not by both processes
  env = two_process_env()
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  codes, logs = run_two_processes(
      _command("fcnjax.commands.train", straight, data_dir, **FIELDS), env)
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)

  command = _command("fcnjax.commands.train", resumed, data_dir, **FIELDS)
  paths = [str(tmp_path / f"log{i}.txt") for i in range(2)]
  codes, elapsed, logs = _stop_mid_training(command, env, paths, [signal.SIGTERM] * 2)
  assert codes == [75, 75], "\n".join(log[-3000:] for log in logs)
  assert elapsed < 60, elapsed
  step, other = _stopped_steps(logs, "SIGTERM")
  assert step == other and 0 < step < STEPS
  assert str(step) in os.listdir(os.path.join(resumed, "checkpoints"))
  assert not os.path.exists(os.path.join(resumed, ".lock"))

  codes, logs = run_two_processes(command, env)
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  assert f"Resuming from step {step}" in logs[0] or f"from step {step} to {STEPS}" in logs[0]
  _assert_same_run(resumed, straight)


@pytest.mark.parametrize("jax_service", ["true", "false"])
def test_sigusr1_to_one_process_stops_both_at_the_same_step(tmp_path, jax_service):
  """The signal reaches process 1 only: handed to JAX's preemption service,
  or (service off) agreed on by an all-gather of stop flags after every step."""
  data_dir = str(tmp_path / "tfds")
  pipeline.get_info(tiny_config(data_dir).data)
  env = two_process_env()
  env["JAX_ENABLE_PREEMPTION_SERVICE"] = jax_service
  command = _command("fcnjax.commands.train", str(tmp_path / "run"), data_dir, **FIELDS)
  paths = [str(tmp_path / f"log{i}.txt") for i in range(2)]
  codes, elapsed, logs = _stop_mid_training(command, env, paths, [None, signal.SIGUSR1])
  assert codes == [75, 75], "\n".join(log[-3000:] for log in logs)
  assert elapsed < 60, elapsed
  assert "fcnjax: SIGUSR1 received: stopping after the current step" in logs[1]
  step, other = _stopped_steps(logs, "SIGUSR1")
  assert step == other and 0 < step < STEPS


def test_full_disk_during_a_two_process_save_ends_both_within_the_bound(tmp_path):
  """W/checkpoints on a 4 MB tmpfs (root only), filled once step 20 is saved:
  a later save fails; both processes end within checkpoint_timeout_s +
  peer_timeout, step 20 stays readable and the rerun finishes from it."""
  from test_preemption import _fill, _mount_tmpfs, _params
  data_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "run")
  directory = os.path.join(workdir, "checkpoints")
  pipeline.get_info(tiny_config(data_dir).data)
  env = two_process_env()
  fields = dict(FIELDS, num_train_steps=60, eval_every_steps=20, checkpoint_every_steps=20,
                checkpoint_timeout_s=10)
  command = _command("fcnjax.commands.train", workdir, data_dir, ["--peer_timeout=5"], **fields)
  _mount_tmpfs(directory, "4m")
  try:
    paths = [str(tmp_path / f"log{i}.txt") for i in range(2)]
    procs = _start_pair(command, env, paths)
    try:
      _fill(directory, after=20)
      filled = time.time()
      codes = [p.wait(timeout=180) for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    elapsed = time.time() - filled
    logs = [open(path, errors="replace").read() for path in paths]
    assert all(c not in (0, 75) for c in codes), (codes, logs[0][-3000:])
    assert elapsed < 10 + 5 + 30, elapsed
    assert any(f"in {directory} failed (" in log for log in logs), logs[0][-3000:]
    os.remove(os.path.join(directory, "filler"))
    intact = int(_params(workdir)["step"])
    assert intact in (20, 40)
    codes, logs = run_two_processes(command, env)
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert f"from step {intact} to 60" in logs[0]
  finally:
    subprocess.run(["umount", "-l", directory], capture_output=True)
