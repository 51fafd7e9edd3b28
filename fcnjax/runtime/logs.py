"""Library logs quiet by default: the metric lines stay readable.

orbax, tensorflow_datasets, jax and etils log through absl / Python logging
at INFO level (a short run prints hundreds of orbax lines). `quiet_libraries`
hides their records below WARNING unless absl's verbosity is raised:
`-v 1` (or `--verbosity=1`) on any entry point shows them again. The
project's own lines and clu's metric lines are never hidden.
"""
import logging
import os

from absl import logging as absl_logging

QUIET_LIBRARIES = frozenset({"orbax", "tensorflow_datasets", "jax", "jaxlib", "etils"})


def library(pathname):
  """The installed package a source file belongs to (the folder after
  site-packages / dist-packages), or None for files outside them."""
  parts = os.path.normpath(pathname or "").split(os.sep)
  for i in range(len(parts) - 2, -1, -1):
    if parts[i] in ("site-packages", "dist-packages"):
      return parts[i + 1]
  return None


class LibraryFilter(logging.Filter):
  """Drops INFO and DEBUG records of QUIET_LIBRARIES while absl's verbosity
  is at its default (0, INFO) or lower."""

  def filter(self, record):
    if record.levelno >= logging.WARNING or absl_logging.get_verbosity() > 0:
      return True
    return library(record.pathname) not in QUIET_LIBRARIES


def quiet_libraries():
  """Installs one LibraryFilter on absl's handler (the one that prints);
  returns it (idempotent)."""
  handler = absl_logging.get_absl_handler()
  for existing in handler.filters:
    if isinstance(existing, LibraryFilter):
      return existing
  quiet = LibraryFilter()
  handler.addFilter(quiet)
  return quiet
