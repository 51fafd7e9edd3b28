"""Two processes on 127.0.0.1 (4 CPU devices each) match one process with 8."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from test_parallel import sgd_reference  # noqa: F401  (module fixture)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("driver_name", ["jit", "pmap"])
def test_two_processes_match_single_process(tmp_path, sgd_reference, driver_name):
  port, out = _free_port(), tmp_path / "params.npz"
  worker = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, worker, str(port), str(i), driver_name, str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=300)[0].decode(errors="replace"))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("multi-host workers timed out")
  assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
  with np.load(out) as f:
    np.testing.assert_allclose(f["losses"], sgd_reference[0], rtol=2e-4)
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(sgd_reference[1])[0]}
    for key, value in flat.items():
      np.testing.assert_allclose(f[key], value, rtol=2e-4, atol=1e-5)
