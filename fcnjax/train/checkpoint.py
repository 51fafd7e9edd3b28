"""Checkpoints with orbax `CheckpointManager`s inside the workdir.

    W/checkpoints/<step>/   the latest `keep` states (resume from the newest)
    W/best/<step>/          the one state with the best validation mIoU

Saves are asynchronous; `close()` waits for them. States are saved from the
host (one copy) and restored onto an abstract target built from a fresh
state, so a run can resume on a different number of devices.
"""
import os

import jax
import orbax.checkpoint as ocp

from fcnjax.train.state import TrainState


def _tree(state: TrainState):
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state}


class Checkpoints:
  """Latest-N and best-by-mIoU orbax managers for one workdir."""

  def __init__(self, workdir, keep=3, best_metric="mean_iou"):
    workdir = os.path.abspath(workdir)
    self.best_metric = best_metric
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, "best"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m[best_metric], best_mode="max",
            keep_checkpoints_without_metrics=False))

  def latest_step(self):
    return self.latest.latest_step()

  def save(self, step, state, scores=None):
    """Saves the host state at `step`; also to best/ when `scores` is given."""
    tree = _tree(state)
    self.latest.save(step, args=ocp.args.StandardSave(tree))
    if scores is not None and scores.get(self.best_metric) == scores.get(self.best_metric):
      self.best.save(step, args=ocp.args.StandardSave(tree),
                     metrics={self.best_metric: float(scores[self.best_metric])})

  def restore(self, state: TrainState, step=None, which="latest"):
    """Restores into the structure of `state` (step None = newest)."""
    manager = self.latest if which == "latest" else self.best
    step = manager.latest_step() if step is None else step
    if which == "best" and step is None:
      step = manager.best_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _tree(state))
    tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return state.replace(**tree)

  def close(self):
    self.latest.wait_until_finished()
    self.best.wait_until_finished()
    self.latest.close()
    self.best.close()


def restore_state(workdir, state: TrainState, which="latest"):
  """Restores `state` from W/checkpoints (or W/best); FileNotFoundError if none."""
  ckpt = Checkpoints(workdir)
  try:
    if which == "best" and ckpt.best.best_step() is not None:
      restored = ckpt.restore(state, ckpt.best.best_step(), which="best")
    else:
      restored = ckpt.restore(state)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: "
                            "train first with python -m fcnjax.main --workdir=...")
  return restored
