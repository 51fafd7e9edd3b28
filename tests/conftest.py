"""Test setup: 8 fake CPU devices (XLA's backend optimisation off), set before jax is imported anywhere; one
JAX compilation cache for the session (in-process, the pytest-xdist workers,
which inherit it from the controller, and the CLI processes the tests start),
so the many tests that compile the same tiny programs compile each once."""
import atexit
import os
import shutil
import tempfile

# LLVM's optimisation level 0: the tiny test programs compile ~1.5x faster and
# run slower, a good trade where compilation is most of a test's time. It
# changes how XLA:CPU generates code, not what the program computes (tests that
# compare two runs run both under it; the multi-process tests clear XLA_FLAGS).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    " --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "FCNJAX_COMPILATION_CACHE" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="fcnjax_test_jax_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["FCNJAX_COMPILATION_CACHE"] = _cache

import jax  # noqa: E402  (after the flags above)

jax.config.update("jax_compilation_cache_dir", os.environ["FCNJAX_COMPILATION_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# pytest-xdist groups (--dist loadgroup): the tests that start pairs of training
# processes run one after another on one worker (side by side they would
# oversubscribe the cores and their time bounds); a file with a module- or
# session-scoped fixture stays on one worker (its fixture built once); every
# other test goes to whichever worker is free. (Ignored with pytest 9.2 +
# pytest-xdist 3.8: xdist writes the group into `item._nodeid`, which pytest 9
# no longer reads; see pyproject.toml.)
MULTI_PROCESS = ("test_multihost.py", "test_multihost_cli.py", "test_preemption_multihost.py")


def _shares_a_fixture(path, seen={}):  # noqa: B006  (a per-session cache)
  if path not in seen:
    text = path.read_text()
    seen[path] = 'scope="module"' in text or 'scope="session"' in text
  return seen[path]


def pytest_collection_modifyitems(items):
  import pytest
  for item in items:
    if item.path.name in MULTI_PROCESS:
      item.add_marker(pytest.mark.xdist_group("multi_process"))
    elif _shares_a_fixture(item.path):
      item.add_marker(pytest.mark.xdist_group(item.path.name))
