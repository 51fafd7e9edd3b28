"""Opening checkpoints says only what matters: no orbax read-only warning for
evaluate / predict, and one warning (no 'Event loop is closed' tracebacks)
for an unreadable step that is skipped."""
import gc
import glob
import logging
import os
import sys

from fcnjax.train import checkpoint
from test_checkpoint import _state
from test_train import tiny_config


def test_unreadable_step_gives_one_warning_and_read_only_none(tmp_path, caplog, monkeypatch):
  state = _state(tiny_config(tmp_path))
  workdir = str(tmp_path / "w")
  ckpt = checkpoint.Checkpoints(workdir)
  for step in (1, 2):
    ckpt.save(step, state.replace(step=step))
  ckpt.close()
  for path in glob.glob(os.path.join(workdir, "checkpoints", "2", "**", "d", "*"),
                        recursive=True):
    with open(path, "wb") as f:
      f.write(b"x" * 100)
  unraisable = []
  monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
  caplog.set_level(logging.INFO)
  reader = checkpoint.Checkpoints(workdir, read_only=True)
  try:
    tree = reader.restore_numpy("latest")
  finally:
    reader.close()
  gc.collect()  # frees orbax's orphaned tasks now, while the log is captured
  assert int(tree["step"]) == 1
  messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert not any("read only" in m for m in messages), messages
  step2 = os.path.join(workdir, "checkpoints", "2")
  assert [m for m in messages if step2 in m] == [m for m in messages if "cannot be read" in m]
  assert len([m for m in messages if "cannot be read" in m]) == 1, messages
  assert "left it in place, using step 1" in messages[-1] and "tensorstore_spec" not in messages[-1]
  assert unraisable == [], [str(u.exc_value) for u in unraisable]


def test_the_asyncio_filter_drops_orbax_and_tensorstore_leftovers_only():
  """asyncio's two unretrieved-exception messages, as its default handler writes
  them: dropped when they name orbax / tensorstore, kept otherwise."""
  from fcnjax.train import quiet
  record = lambda msg: logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1, msg,
                                         None, None)
  keep = quiet._OrphanedOrbaxTaskFilter().filter
  error = ('ValueError(\'OUT_OF_RANGE: Error opening "zarr" driver: Error reading '
           '"params.kernel/.zarray" in OCDBT database at local file "/w/2/default/"\')')
  assert not keep(record("Task exception was never retrieved\nfuture: <Task finished "
                         "coro=<ArrayHandler.metadata() done, defined at /site-packages/"
                         "orbax/checkpoint/type_handlers.py:1>>"))
  assert not keep(record(f"Future exception was never retrieved\nfuture: <Future finished "
                         f"exception={error}>"))
  assert keep(record("Future exception was never retrieved\nfuture: <Future finished "
                     "exception=KeyError('mine')>"))
  assert keep(record(f"something else: {error}"))
