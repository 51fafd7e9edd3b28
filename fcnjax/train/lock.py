"""The workdir lock: an exclusive `fcntl.flock` on W/.lock, held by the
training that owns W.

The kernel releases the lock when the process holding it ends, however it
ends (a crash, SIGKILL), so a lock is never stale and a new training takes it
at once. The file holds the owner's pid and host, for the message a second
training gets; what decides is the flock. In a multi-process run process 0
holds the lock for all.
"""
import errno
import fcntl
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

LOCK_NAME = ".lock"
_held = {}  # lock file path -> the open file whose flock this process holds


def _read_owner(f, wait_s=1.0):
  """(pid, host) written in the lock file `f`; ('?', '?') if unreadable. The
  owner writes them just after taking the lock: a reader that lost the race
  waits up to `wait_s` for them."""
  deadline = time.monotonic() + wait_s
  while True:
    f.seek(0)
    try:
      pid, host = f.read().split()
      return pid, host
    except ValueError:
      if time.monotonic() > deadline:
        return "?", "?"
      time.sleep(0.02)


def _open_locked(path, workdir):
  """The lock file at `path`, open with this process's flock on it: the file
  object, and the (pid, host) a previous owner left in it (None if none).
  RuntimeError naming the workdir and the owner if another open file holds it."""
  while True:
    f = open(path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
        f.close()
        raise RuntimeError(f"could not lock {path}: {e}") from None
      pid, host = _read_owner(f)
      f.close()
      raise RuntimeError(
          f"{workdir} is in use by another training (pid {pid} on {host}, lock file "
          f"{path}); wait for it to end (the kernel releases the lock when that process "
          "exits)") from None
    try:  # the owner before us may have removed the file as we opened it
      same = os.path.samestat(os.stat(path), os.fstat(f.fileno()))
    except FileNotFoundError:
      same = False
    if same:
      f.seek(0)
      left = f.read().split()
      return f, (tuple(left) if len(left) == 2 else None)
    f.close()


def acquire_lock(workdir):
  """Takes the flock of W/.lock and writes this process's pid and host in it;
  returns the lock file's path (for `release_lock`).

  RuntimeError naming the workdir and the owner's pid when another process
  (or another `acquire_lock` in this one) holds it. A lock file left by a
  process that ended without releasing it is taken over with a warning.
  """
  path = os.path.join(workdir, LOCK_NAME)
  os.makedirs(workdir, exist_ok=True)
  f, left = _open_locked(path, workdir)
  if left is not None:
    logging.warning("Taking over the stale lock %s of pid %s on %s, which ended without "
                    "releasing it", path, *left)
  f.seek(0)
  f.truncate()
  f.write(f"{os.getpid()} {socket.gethostname()}\n")
  f.flush()
  _held[path] = f
  return path


def release_lock(path):
  """Removes the lock file and releases its flock, if this process holds it."""
  f = _held.pop(path, None) if path else None
  if f is not None:
    try:
      os.remove(path)  # while still locked: a new owner locks a new file
    except FileNotFoundError:
      pass
    f.close()


def lock_all_processes(workdir):
  """Process 0 takes the lock; every process raises if it could not."""
  path, error = None, None
  if jax.process_index() == 0:
    try:
      path = acquire_lock(workdir)
    except RuntimeError as e:
      error = e
  if jax.process_count() > 1:
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not locked and error is None:
      error = RuntimeError(f"{workdir} is in use by another training (process 0 "
                           f"found {os.path.join(workdir, LOCK_NAME)} held)")
  if error is not None:
    raise error
  return path
