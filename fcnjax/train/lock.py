"""The workdir lock: W/.lock holds the pid and host of the training that owns W.

A second training on the same workdir is refused with a message naming the
owner; a lock left by a process that is gone (a crash) is taken over with a
warning. In a multi-process run process 0 holds the lock for all.
"""
import os
import socket

import jax
import numpy as np
from absl import logging

LOCK_NAME = ".lock"


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by another user
    return True
  return True


def _read_lock(path):
  """(pid, host) written in the lock file; (None, None) if unreadable."""
  try:
    with open(path) as f:
      pid, host = f.read().split()
    return int(pid), host
  except (OSError, ValueError):
    return None, None


def acquire_lock(workdir):
  """Creates W/.lock holding this process's pid and host.

  RuntimeError naming the workdir and pid when a live process holds it (or a
  process on another host, which cannot be checked); a lock whose process is
  gone is taken over with a warning.
  """
  path = os.path.join(workdir, LOCK_NAME)
  os.makedirs(workdir, exist_ok=True)
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      pid, host = _read_lock(path)
      if pid is not None and (host != socket.gethostname() or _pid_alive(pid)):
        raise RuntimeError(
            f"{workdir} is in use by another training (pid {pid} on {host}, lock file "
            f"{path}); wait for it to end, or delete the lock file if that process "
            "is gone") from None
      logging.warning("Taking over the stale lock %s of pid %s, which is no longer "
                      "running", path, pid)
      try:
        os.remove(path)
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, "w") as f:
      f.write(f"{os.getpid()} {socket.gethostname()}\n")
    return path
  raise RuntimeError(f"could not create the lock file {path}")


def release_lock(path):
  """Removes the lock file if it still holds this process's pid."""
  if path and _read_lock(path) == (os.getpid(), socket.gethostname()):
    os.remove(path)


def lock_all_processes(workdir):
  """Process 0 takes the lock; every process raises if it could not."""
  path, error = None, None
  if jax.process_index() == 0:
    try:
      path = acquire_lock(workdir)
    except RuntimeError as e:
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not locked and error is None:
      error = RuntimeError(f"{workdir} is in use by another training (process 0 "
                           f"found {os.path.join(workdir, LOCK_NAME)} held)")
  if error is not None:
    raise error
  return path
