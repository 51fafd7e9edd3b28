"""Library logs are quiet by default: a default training run prints no orbax
INFO line (the project's lines remain); `-v 1` (verbosity 1) shows them."""
import contextlib
import io
import logging
import os

import clu
import orbax.checkpoint
import pytest
from absl import logging as absl_logging

import fcnjax
from fcnjax.runtime import logs
from fcnjax.data import pipeline
from fcnjax.train import checkpoint, loop
from test_checkpoint import _state
from test_train import tiny_config

FCNJAX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(logs.__file__)))


def _py_files(module):
  root = os.path.dirname(os.path.abspath(module.__file__))
  return {f for _, _, files in os.walk(root) for f in files if f.endswith(".py")}


def _orbax_files():
  """Basenames of orbax's source files that no fcnjax or clu file shares (a
  log line shows only the basename)."""
  return _py_files(orbax.checkpoint) - _py_files(fcnjax) - _py_files(clu)


def _lines_from(text, names, levels="IWE"):
  """Log lines (absl format: 'I1126 09:32:45.5 123 file.py:57] ...') of
  `names` at `levels` (I: INFO, W: WARNING, E: ERROR)."""
  out = []
  for line in text.splitlines():
    head = line.split("]", 1)[0].split()
    if len(head) >= 4 and head[0][0] in levels and head[3].split(":")[0] in names:
      out.append(line)
  return out


@contextlib.contextmanager
def captured(verbosity):
  """What absl's handler prints (to stderr: flags are not parsed in tests), at
  the given verbosity, into a StringIO."""
  handler = absl_logging.get_absl_handler()
  old_verbosity = absl_logging.get_verbosity()
  attached = handler in logging.root.handlers
  if not attached:
    logging.root.addHandler(handler)
  absl_logging.set_verbosity(verbosity)
  try:
    with contextlib.redirect_stderr(io.StringIO()) as stream:
      yield stream
  finally:
    absl_logging.set_verbosity(old_verbosity)
    if not attached:
      logging.root.removeHandler(handler)


@pytest.fixture
def quiet():
  installed = logs.quiet_libraries()
  yield installed
  absl_logging.get_absl_handler().removeFilter(installed)


def test_library_of_a_path():
  assert logs.library("/x/lib/python3.11/site-packages/orbax/checkpoint/a.py") == "orbax"
  assert logs.library("/x/dist-packages/jax/_src/xla_bridge.py") == "jax"
  assert logs.library(os.path.join(FCNJAX_DIR, "fcnjax", "train", "loop.py")) is None


def test_default_run_prints_no_orbax_info(tmp_path, quiet):
  config = tiny_config(tmp_path / "tfds")
  workdir = str(tmp_path / "run")
  with captured(absl_logging.INFO) as out:
    loop.train_and_evaluate(config, workdir)
  text = out.getvalue()
  assert _lines_from(text, {"loop.py"}), text[-2000:]  # our lines are there
  assert _lines_from(text, _orbax_files(), levels="I") == []
  # -v 1 shows them: the same restore, quiet then verbose.
  with captured(absl_logging.INFO) as out:
    checkpoint.restore_state(workdir, _state(config, pipeline.get_info(config.data)))
  assert _lines_from(out.getvalue(), _orbax_files(), levels="I") == []
  with captured(1) as out:
    checkpoint.restore_state(workdir, _state(config, pipeline.get_info(config.data)))
  assert _lines_from(out.getvalue(), _orbax_files(), levels="I")
