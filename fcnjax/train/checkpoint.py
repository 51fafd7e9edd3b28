"""Checkpoints: one orbax `CheckpointManager` per workdir.

    W/checkpoints/<step>/       the latest `keep` states plus the one with the best
                                validation mIoU (orbax preservation policies)
    W/corrupt_checkpoints/      unreadable steps set aside by a resumed training
    W/.lock                     flock'd by the training that owns W (its pid and host)

Each step carries its scores (orbax metrics) and a description of its run
(custom metadata: `description.describe`). Saves are asynchronous; `close()`
waits for them. States are saved from the host and restored as host arrays
shaped like a fresh state, so a run resumes on any number of devices and
hosts. An unreadable step is skipped, with one warning, for the newest
readable one. A save that cannot be written (unwritable directory, full or
failing disk) stops the run with an error naming the directory, at once or
within `timeout_s` (orbax's bound on a save's commit and its barriers); the
steps already committed stay intact (orbax renames a step's folder when it
is complete). Workdirs of the older layout with a `best/` folder restore
from their `checkpoints/`.
"""
import math
import os
import shutil
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from fcnjax.train import lock, quiet
from fcnjax.train.description import check_matches, describe  # noqa: F401 (loop)
from fcnjax.train.state import TrainState

BEST_METRIC = "mean_iou"
DEFAULT_TIMEOUT_S = 60


def _tree(state: TrainState):
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state}


def _host_zeros(x):
  dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)  # python int step
  return np.zeros(np.shape(x), dtype)


def _best_value(metrics):
  """The saved mIoU, -inf where a step has none (or a NaN): ranks steps."""
  value = (metrics or {}).get(BEST_METRIC)
  return float(value) if value is not None and math.isfinite(value) else -math.inf


def _manager(directory, keep, read_only, timeout_s=DEFAULT_TIMEOUT_S):
  """One manager: latest `keep` steps + the best by mIoU (or read-only);
  a save not committed within `timeout_s` seconds fails."""
  if read_only:
    quiet.silence_read_only_warning()
    options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                           save_interval_steps=0)
  else:
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(get_metric_fn=_best_value, reverse=False, n=1,
                                  keep_checkpoints_without_metrics=False)])
    # best_fn only makes the manager write each step's metrics.
    options = ocp.CheckpointManagerOptions(
        create=True, best_fn=_best_value, preservation_policy=policy,
        async_options=ocp.AsyncOptions(timeout_secs=int(timeout_s)))
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def _first_line(error, limit=300):
  """'Type: first line', without tensorstore's JSON spec, at most ~`limit` characters."""
  lines = str(error).strip().splitlines()
  text = (lines[0] if lines else "").split(" [tensorstore_spec", 1)[0]
  text = f"{type(error).__name__}: {text[:limit] + ' ...' if len(text) > limit else text}"
  if isinstance(error, TimeoutError) or "DEADLINE_EXCEEDED" in text:
    # Orbax reports a barrier, not the process whose write failed or hung.
    return (f"not committed within config.checkpoint_timeout_s: a full or failing disk, "
            f"or a process that did not reach the save; see each process's log; {text}")
  return text


def _stopped(what, directory, error):
  return (f"{what} in {directory} failed ({_first_line(error)}); training stopped. Make "
          "the directory writable (or free space) and rerun the same command to resume.")


def check_writable(directory, step=None):
  """RuntimeError naming `directory` when a file cannot be created in it: a
  save that would fail stops the run at once (orbax would fail in the
  background and its barriers would wait for minutes)."""
  try:
    fd, path = tempfile.mkstemp(prefix=".write_check_", dir=directory)
    os.close(fd)
    os.remove(path)
  except OSError as e:
    what = "writing checkpoints" if step is None else f"saving step {step}"
    raise RuntimeError(_stopped(what, directory, e)) from e


class Checkpoints:
  """The checkpoints of one workdir: save, restore (newest or best), close.

  A writer (read_only=False) holds W/.lock until `close()`; `description`
  (see `describe`) is saved with every step and checked on restore.
  """

  def __init__(self, workdir, keep=3, description=None, read_only=False,
               timeout_s=DEFAULT_TIMEOUT_S):
    if keep < 1:
      raise ValueError(f"config.keep_checkpoints={keep}: must be at least 1 (the "
                       "newest checkpoint is what a run resumes from)")
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, "checkpoints")
    self.description = description
    self.read_only = read_only
    self.lock_path = None if read_only else lock.lock_all_processes(self.workdir)
    quiet.silence_closed_loop_errors()  # after a failed read or write (see `quiet`)
    try:
      self.manager = _manager(self.directory, keep, read_only, timeout_s)
      if not read_only:
        check_writable(self.directory)
    except OSError as e:  # W/checkpoints cannot be created or listed
      lock.release_lock(self.lock_path)
      raise RuntimeError(_stopped("opening checkpoints", self.directory, e)) from e
    except BaseException:
      lock.release_lock(self.lock_path)
      raise

  def latest_step(self):
    return self.manager.latest_step()

  def step_path(self, step):
    return os.path.join(self.directory, str(step))

  def save(self, step, state, scores=None, window=None):
    """Saves the host state at `step` with the finite scalars of `scores`
    (and `window`, JSON: the open averaging window of a stopped run)."""
    metrics = {k: float(v) for k, v in (scores or {}).items()
               if isinstance(v, (int, float)) and math.isfinite(v)}
    meta = dict(self.description or {}, **({"window": window} if window else {}))
    check_writable(self.directory, step)
    try:  # also raises the error of an earlier asynchronous save
      self.manager.save(step, args=ocp.args.StandardSave(_tree(state)), metrics=metrics,
                        custom_metadata=meta or None)
    except Exception as e:
      raise RuntimeError(_stopped(f"saving step {step}", self.directory, e)) from e

  def metrics(self, step):
    """The scores saved with `step` ({} if none or unreadable)."""
    try:
      return dict(self.manager.metrics(step) or {})
    except Exception:  # a damaged metrics file only loses the ranking
      return {}

  def steps(self, which="latest"):
    """Steps in the order to try them: newest first, or best mIoU first
    (steps without a score after, newest first)."""
    if which not in ("latest", "best"):
      raise ValueError(f"which={which!r}; valid: ('latest', 'best')")
    newest = sorted(self.manager.all_steps(), reverse=True)
    if which == "latest":
      return newest
    value = {s: _best_value(self.metrics(s)) for s in newest}
    return sorted(newest, key=lambda s: -value[s])  # stable: newer first on ties

  def saved_window(self, step):
    """The averaging window saved with `step` (None if none)."""
    try:
      return (self.manager.metadata(step).custom_metadata or {}).get("window")
    except Exception:  # unreadable metadata: the restore itself has succeeded
      return None

  def saved_description(self):
    """The description saved with the newest step that has one, or None."""
    for step in self.steps():
      try:
        meta = self.manager.metadata(step).custom_metadata
      except Exception:  # unreadable step metadata: look at an older step
        continue
      if meta and "model" in meta:
        return dict(meta)
    return None

  def restore(self, state: TrainState, step=None, which="latest"):
    """The newest (or best) readable checkpoint in the structure of `state`.

    None when there is none. An unreadable step is skipped with a warning; a
    training (not read-only) resuming from an older step sets the unreadable
    newer ones aside in W/corrupt_checkpoints/ so that its saves replace them.
    """
    saved = self.saved_description() if self.description else None
    if saved:
      check_matches(saved, self.description, self.workdir)
    # Host (numpy) leaves: a driver places them on any devices, on any host.
    target = jax.tree.map(_host_zeros, _tree(state))
    steps = [step] if step is not None else self.steps(which)
    tree = self._first_readable(steps, lambda s: target, set_aside=which == "latest")
    return None if tree is None else state.replace(**tree)

  def restore_numpy(self, which="best"):
    """The saved tree ({step, params, batch_stats, opt_state}) as numpy arrays
    shaped as saved: no model needed. None when there is no checkpoint."""
    def target(step):
      tree = dict(self.manager.item_metadata(step).tree)
      return jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return self._first_readable(self.steps(which), target, set_aside=False)

  def _first_readable(self, steps, target, set_aside):
    """The tree of the first of `steps` that restores onto `target(step)`."""
    failed = {}
    for step in steps:
      try:
        tree = self.manager.restore(step, args=ocp.args.StandardRestore(target(step)))
      except Exception as e:  # truncated / missing files: tensorstore and orbax errors
        failed[step] = error = e
        continue
      set_aside = bool(failed) and set_aside and not self.read_only
      moved = self._set_aside(failed) if set_aside else {}
      for s, e in failed.items():
        where = (f"moved it to {moved[s]}" if s in moved else "process 0 set it aside"
                 if set_aside else "left it in place")
        logging.warning("Checkpoint %s cannot be read (%s); %s, using step %d",
                        self.step_path(s), _first_line(e), where, step)
      return tree
    if failed:
      raise RuntimeError(f"no readable checkpoint in {self.directory} (tried steps "
                         f"{list(failed)}): {_first_line(error)}") from error
    return None

  def _set_aside(self, steps):
    """Moves unreadable steps to W/corrupt_checkpoints/ (process 0 does it);
    returns {step: where it went}."""
    moved = {}
    if jax.process_index() == 0:
      target = os.path.join(self.workdir, "corrupt_checkpoints")
      os.makedirs(target, exist_ok=True)
      for s in steps:
        dest = os.path.join(target, str(s))
        while os.path.exists(dest):
          dest += "_"
        shutil.move(self.step_path(s), dest)
        moved[s] = dest
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("fcnjax_set_aside_checkpoints")
    self.manager.reload()
    return moved

  def close(self):
    """Waits for pending saves, then releases the workdir's lock."""
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    except Exception as e:
      if self.read_only:
        raise
      raise RuntimeError(_stopped("finishing a save", self.directory, e)) from e
    finally:
      lock.release_lock(self.lock_path)


def _read(workdir, read):
  """`read(ckpt)` on a read-only Checkpoints of W; FileNotFoundError when W
  has no checkpoint or `read` finds none (nothing is created in W)."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  missing = FileNotFoundError(f"no checkpoint in {directory}: train first with "
                              "python -m fcnjax.commands.train --workdir=...")
  if not os.path.isdir(directory):
    raise missing
  ckpt = Checkpoints(workdir, read_only=True)
  try:
    result = read(ckpt)
  finally:
    ckpt.close()
  if result is None:
    raise missing
  return result


def restore_state(workdir, state: TrainState, which="latest"):
  """Restores `state` from W/checkpoints ('latest' or 'best')."""
  return _read(workdir, lambda ckpt: ckpt.restore(state, which=which))


def restore_params(workdir, which="best"):
  """W's saved params as numpy arrays, shaped as saved: how another model
  (the next FCN stage, another head) is initialised from a run."""
  return _read(workdir, lambda ckpt: ckpt.restore_numpy(which))["params"]


def saved_config(workdir):
  """{'config', 'model', 'num_classes', 'class_names'} saved with W's newest
  checkpoint, or None (no checkpoint, or one written without it)."""
  try:
    return _read(workdir, Checkpoints.saved_description)
  except FileNotFoundError:
    return None
