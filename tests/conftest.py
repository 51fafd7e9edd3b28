"""Test setup: 8 fake CPU devices (XLA's backend optimisation off), set before jax is imported anywhere; one
JAX compilation cache for the session (in-process, the pytest-xdist workers,
which inherit it from the controller, and the CLI processes the tests start),
so the many tests that compile the same tiny programs compile each once."""
import atexit
import os
import shutil
import tempfile

import pytest

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

# How pytest-xdist shares the tests between its workers (one per core): the
# tests that start pairs of training processes run one after another on one
# worker (side by side they would oversubscribe the cores and their time
# bounds); a file with a module- or session-scoped fixture stays on one worker
# (its fixture built once); every other test goes to whichever worker is free.
# The grouping is a scheduler of its own rather than `xdist_group` marks with
# `--dist loadgroup`: pytest-xdist 3.8 writes a mark's group into
# `item._nodeid`, which pytest 9 no longer reads, so the marks group nothing.
MULTI_PROCESS = ("test_multihost.py", "test_multihost_cli.py", "test_preemption_multihost.py")


def _shares_a_fixture(path, seen={}):  # noqa: B006  (a per-session cache)
  if path not in seen:
    with open(path) as f:
      text = f.read()
    seen[path] = 'scope="module"' in text or 'scope="session"' in text
  return seen[path]


def work_unit(nodeid, rootdir="."):
  """The unit of work a test belongs to: its group's name, or its own id."""
  path = nodeid.split("::", 1)[0]
  name = os.path.basename(path)
  if name in MULTI_PROCESS:
    return "multi_process"
  if _shares_a_fixture(os.path.join(rootdir, path)):
    return path
  return nodeid


@pytest.hookimpl(optionalhook=True)  # the hook exists only with pytest-xdist installed
def pytest_xdist_make_scheduler(config, log):
  """Units of work from `work_unit`, the largest (by test count) sent first."""
  from xdist.scheduler import LoadScopeScheduling

  class GroupScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid):
      return work_unit(nodeid, str(config.rootpath))

  return GroupScheduling(config, log)
