"""Two kinds of orbax / tensorstore noise that say nothing to a user, silenced at their source.

- "Given directory is read only=...": orbax warns whenever a manager is
  opened read-only, which is what evaluate and predict mean to do (twice
  per call: the config check and the restore).
- "RuntimeError: Event loop is closed" (one traceback per array): when one
  array of a checkpoint cannot be read, orbax ends its restore and closes
  its event loop while tensorstore's reads of the other arrays are still in
  flight; each of those then completes into the closed loop, and Python
  prints the error through sys.unraisablehook. The restore's own error is
  reported (once) by `checkpoint.Checkpoints`.
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


def _closed_loop(unraisable):
  value = unraisable.exc_value
  return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def silence_closed_loop_errors():
  """Makes sys.unraisablehook drop 'Event loop is closed' RuntimeErrors and
  pass everything else on (idempotent). Process-wide: late reads may land
  after the restore has returned."""
  previous = sys.unraisablehook
  if getattr(previous, "_fcnjax_quiet", False):
    return

  def hook(unraisable):
    if not _closed_loop(unraisable):
      previous(unraisable)

  hook._fcnjax_quiet = True
  sys.unraisablehook = hook
