"""Errors a user can cause end an entry point with one line, `error: ...`.

Known errors: any OSError (a missing file or folder, a permission, a full
disk: the message names the path), and the ValueError, RuntimeError,
ArithmeticError and ImportError the project raises itself (their messages
name the file or config field; an error of these types raised inside a
library is not known and keeps its traceback). `--traceback` or `-v 1`
shows the frames of known errors too.

grain adds a banner note ("For simplicity, Grain has removed its internal
frames ...") to errors raised in its threads; it is removed, so the output
ends with the original error.
"""
import os
import traceback

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAISED_BY_THE_PROJECT = (ValueError, RuntimeError, ArithmeticError, ImportError)
GRAIN_NOTE = "For simplicity, Grain has removed"


def strip_grain_notes(error):
  """Removes grain's traceback banner from `error` and its causes (in place)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    notes = getattr(error, "__notes__", None)
    if notes:
      error.__notes__ = [n for n in notes if GRAIN_NOTE not in n]
    error = error.__cause__ or error.__context__


def raised_by_the_project(error):
  """Whether the innermost frame of error's traceback is in the fcnjax package."""
  frames = traceback.extract_tb(error.__traceback__)
  return bool(frames) and os.path.abspath(frames[-1].filename).startswith(PACKAGE_DIR + os.sep)


def is_known(error):
  if isinstance(error, OSError):
    return True
  return isinstance(error, RAISED_BY_THE_PROJECT) and raised_by_the_project(error)


def message(error):
  """'error: <message>' (an OSError's path added when its message lacks it)."""
  text = str(error) or type(error).__name__
  filename = getattr(error, "filename", None)
  if isinstance(error, OSError) and filename and str(filename) not in text:
    text = f"{text}: {filename}"
  return f"error: {text}"


def as_messages(main, argv, show_frames=lambda: False):
  """main(argv); a known error becomes SystemExit('error: ...') (status 1)
  unless show_frames() says to keep the traceback."""
  try:
    return main(argv)
  except Exception as e:  # noqa: BLE001  sorted below; unknown errors re-raised as they are
    strip_grain_notes(e)
    if show_frames() or not is_known(e):
      raise
    raise SystemExit(message(e)) from None
