"""What a resumed training may change, and what it carries over from the checkpoint.

A resume continues the run its checkpoints belong to. It is refused (before
anything in the workdir is written) when:
- the checkpoints are past `config.num_train_steps` (nothing would train, and
  the workdir's config.json would no longer describe them);
- a field that shapes the learning-rate schedule differs from the one saved
  with the checkpoint, unless `config.change_schedule=True`.

The schedule fields are `optimizer.{schedule, learning_rate, warmup_steps,
step_every}` and `num_train_steps` where the schedule depends on the length
of the run (cosine, poly, step without step_every). With
`config.change_schedule=True` the rule is: the schedule is rebuilt from the
new fields and followed from the resumed step on, as if the run had been
configured so from the start (the learning rate jumps to the new curve's
value at the resumed step; earlier steps are not redone).

A run stopped between two log steps saves the per-step metrics of its open
averaging window with the checkpoint, so the resumed run logs the same
averages as an uninterrupted one.
"""
import numpy as np

from fcnjax.train.validate import ConfigError

OPTIMIZER_SCHEDULE_FIELDS = ("schedule", "learning_rate", "warmup_steps", "step_every")
WINDOW_KEYS = ("loss", "pixel_acc", "grad_norm")


def depends_on_length(optimizer):
  """Whether the learning-rate curve depends on num_train_steps."""
  return optimizer.get("schedule") in ("cosine", "poly") or (
      optimizer.get("schedule") == "step" and not optimizer.get("step_every"))


def schedule_changes(saved, config):
  """'field: checkpoint a, config b' for each schedule field that differs."""
  opt, saved_opt = config.optimizer, saved.get("optimizer", {})
  diffs = [f"optimizer.{k}: checkpoint {saved_opt.get(k)!r}, config {opt.get(k)!r}"
           for k in OPTIMIZER_SCHEDULE_FIELDS if saved_opt.get(k) != opt.get(k)]
  length_matters = depends_on_length(opt) or depends_on_length(saved_opt)
  if length_matters and saved.get("num_train_steps") != config.num_train_steps:
    diffs.insert(0, f"num_train_steps: checkpoint {saved.get('num_train_steps')!r}, "
                 f"config {config.num_train_steps!r}")
  return diffs


def check_resume(saved, config, step, workdir):
  """ConfigError naming the fields when resuming `saved` (the config saved
  with the checkpoints, or None) at `step` would silently change the run."""
  if step > config.num_train_steps:
    raise ConfigError(
        f"the checkpoints in {workdir} are at step {step}, past config.num_train_steps="
        f"{config.num_train_steps}; nothing is trained. Pass a larger num_train_steps "
        "(with config.change_schedule=True if the schedule depends on it) or another "
        "--workdir")
  diffs = schedule_changes(saved, config) if saved else []
  if diffs and not config.get("change_schedule", False):
    raise ConfigError(
        f"resuming {workdir} at step {step} would change its learning-rate schedule: "
        + "; ".join(diffs) + ". Rerun with the checkpoint's values, or pass "
        "--config.change_schedule=True to follow the new schedule from this step on")
  return diffs


def window_to_json(window):
  """The open averaging window's per-step metrics as JSON (exact float32 values)."""
  if not window:
    return None
  return {k: {"dtype": str(np.asarray(window[0][k]).dtype),
              "values": [float(m[k]) for m in window]} for k in WINDOW_KEYS}


def window_from_json(saved):
  """Inverse of window_to_json: per-step dicts of numpy scalars."""
  if not saved:
    return []
  columns = {k: np.asarray(v["values"], v["dtype"]) for k, v in saved.items()}
  count = len(next(iter(columns.values())))
  return [{k: columns[k][i] for k in columns} for i in range(count)]


def saved_scores_line(workdir, step, metrics):
  """The line a run with no steps left prints: the scores saved with `step`."""
  shown = " ".join(f"{k}={metrics[k]:.4f}" for k in ("mean_iou", "pixel_acc",
                                                       "boundary_iou") if k in metrics)
  return (f"{workdir} is already at step {step} of {step}: nothing to train. "
          f"Scores saved with step {step}: {shown or 'none'}")
