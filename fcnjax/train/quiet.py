"""Three kinds of orbax / tensorstore noise that say nothing to a user, silenced at their source.

- "Given directory is read only=...": orbax warns whenever a manager is
  opened read-only, which is what evaluate and predict mean to do (twice
  per call: the config check and the restore).
- "RuntimeError: Event loop is closed" (one traceback per array): when one
  array of a checkpoint cannot be read, orbax ends its restore and closes
  its event loop while tensorstore's reads of the other arrays are still in
  flight; each of those then completes into the closed loop, and Python
  prints the error through sys.unraisablehook. The restore's own error is
  reported (once) by `checkpoint.Checkpoints`.
- "Task exception was never retrieved" / "Future exception was never
  retrieved" (asyncio's logger, ERROR): the same failed restore leaves
  orbax's other per-array tasks (`ArrayHandler.metadata`) and tensorstore's
  read futures holding the same read error; when the garbage collector frees
  them, asyncio logs each one, at a time that depends on the collector.
"""
import logging
import sys

READ_ONLY_MESSAGE = "Given directory is read only=%s"


class _ReadOnlyFilter(logging.Filter):
  def filter(self, record):
    return record.msg != READ_ONLY_MESSAGE


def silence_read_only_warning():
  """Drops orbax's read-only warning from absl's logger (idempotent)."""
  logger = logging.getLogger("absl")
  if not any(isinstance(f, _ReadOnlyFilter) for f in logger.filters):
    logger.addFilter(_ReadOnlyFilter())


# asyncio's messages for a task / future whose exception nobody retrieved.
UNRETRIEVED = ("Task exception was never retrieved", "Future exception was never retrieved")
# What names orbax or tensorstore in them: a task's coroutine (orbax's module
# path), a future's exception (tensorstore's error text: zarr driver, OCDBT).
SOURCES = ("orbax", "tensorstore", '"zarr" driver', "OCDBT database")


class _OrphanedOrbaxTaskFilter(logging.Filter):
  """Drops asyncio's unretrieved task / future errors that come from orbax or tensorstore."""

  def filter(self, record):
    message = str(record.msg)
    if not message.startswith(UNRETRIEVED):
      return True
    return not any(source in message for source in SOURCES)


def _closed_loop(unraisable):
  value = unraisable.exc_value
  return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def silence_closed_loop_errors():
  """Makes sys.unraisablehook drop 'Event loop is closed' RuntimeErrors and
  asyncio's logger drop orbax's orphaned-task errors, passing everything
  else on (idempotent). Process-wide: late reads and garbage collection may
  come after the restore has returned."""
  previous = sys.unraisablehook
  if getattr(previous, "_fcnjax_quiet", False):
    return

  def hook(unraisable):
    if not _closed_loop(unraisable):
      previous(unraisable)

  hook._fcnjax_quiet = True
  sys.unraisablehook = hook
  logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _OrphanedOrbaxTaskFilter) for f in logger.filters):
    logger.addFilter(_OrphanedOrbaxTaskFilter())
