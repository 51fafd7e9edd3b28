"""Two processes on 127.0.0.1 (4 CPU devices each) match one process with 8."""
import os
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from test_parallel import sgd_reference  # noqa: F401  (module fixture)

# What a coordinator prints when its port was taken after it was picked.
BIND_FAILURES = ("Failed to start RPC server", "Failed to add port")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait(procs, timeout):
  """Waits until all exit or one fails; kills the rest (and all on timeout)."""
  deadline = time.time() + timeout
  try:
    while any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        return True
      if time.time() > deadline:
        return False
      time.sleep(0.5)
    return True
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()


def two_process_env():
  """The environment of a test's pair of processes: this one's without the 8
  fake devices (one CPU device per process), XLA's backend optimisation off
  (as in this process: a tiny net's few steps are mostly compilation)."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
  return env


def run_two_processes(make_command, env, timeout=300, attempts=3):
  """Runs `make_command(port, process_id)` for processes 0 and 1 on a port
  picked at launch; a coordinator whose port got taken meanwhile is retried on
  another. Returns (return codes, logs); fails the test on `timeout` seconds."""
  for _ in range(attempts):
    port = _free_port()
    logs = [tempfile.TemporaryFile() for _ in range(2)]
    procs = [subprocess.Popen(make_command(port, i), env=env, stdout=logs[i],
                              stderr=subprocess.STDOUT) for i in range(2)]
    finished = _wait(procs, timeout)
    texts = []
    for log in logs:
      log.seek(0)
      texts.append(log.read().decode(errors="replace"))
      log.close()
    if not finished:
      pytest.fail(f"2 processes still running after {timeout} s, killed:\n"
                  + "\n".join(t[-3000:] for t in texts))
    if procs[0].returncode and any(m in texts[0] for m in BIND_FAILURES):
      continue
    return [p.returncode for p in procs], texts
  pytest.fail(f"the coordinator could not bind a free port in {attempts} tries")


@pytest.mark.parametrize("driver_name", ["jit", "pmap"])
def test_two_processes_match_single_process(tmp_path, sgd_reference, driver_name):
  out = tmp_path / "params.npz"
  worker = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
  env = two_process_env()
  codes, logs = run_two_processes(
      lambda port, i: [sys.executable, worker, str(port), str(i), driver_name, str(out)], env)
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  with np.load(out) as f:
    np.testing.assert_allclose(f["losses"], sgd_reference[0], rtol=2e-4)
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(sgd_reference[1])[0]}
    for key, value in flat.items():
      np.testing.assert_allclose(f[key], value, rtol=2e-4, atol=1e-5)


# Joins 2 processes with a heartbeat every millisecond and exits: the watchdog
# is then nearly always inside the runtime's client when the process ends.
EXIT_WORKER = """
import sys
from fcnjax.runtime import peers
peers.initialize(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]), peer_timeout=5,
                 heartbeat_interval=0.001)
import jax
print("sum", float(jax.numpy.ones(3).sum()), flush=True)
"""


def test_processes_exit_cleanly_while_the_watchdog_beats():
  """A normal exit stops the watchdog before the interpreter finalises; a
  daemon thread left inside the C++ client aborts the process there
  ("terminate called ... exception not rethrown", status -6)."""
  env = two_process_env()
  for _ in range(4):
    codes, logs = run_two_processes(
        lambda port, i: [sys.executable, "-c", EXIT_WORKER, str(port), str(i)], env,
        timeout=120)
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert all("sum 3.0" in log and "terminate called" not in log for log in logs)
