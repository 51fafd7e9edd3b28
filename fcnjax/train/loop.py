"""`train_and_evaluate(config, workdir)`: the training loop and evaluation.

Everything a run writes lives in `workdir`: TensorBoard events, checkpoints
(`checkpoints/`), `config.json`, `curves.png`, `eval/`. Re-running
the same command resumes from the newest checkpoint; the data order depends
only on (seed, step), so the resumed run sees the batches an uninterrupted
run would have seen. A resume that would change the run is refused
(`resume.check_resume`); SIGTERM, SIGINT and SIGUSR1 stop a run at a step
boundary with a checkpoint of that step (`preemption`).
"""
import math
import os
import time

import jax
import numpy as np
from absl import logging
from fcnjax.train import tensorboard  # before clu: TensorFlow-free event files
from clu import parameter_overview, periodic_actions  # noqa: I100

from fcnjax import metrics as seg_metrics
from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.train import assemble, checkpoint, preemption, resume
from fcnjax.train.history import load_history, save_history  # noqa: F401


def evaluate(driver, state, config, info, progress=True):
  """Scores on the validation split: `segmentation_scores` + boundary IoU."""
  from tqdm import tqdm
  total = {}
  n_batches = math.ceil(info.num_eval / config.eval_batch_size)
  if config.data.get("num_eval"):
    n_batches = math.ceil(min(info.num_eval, config.data.num_eval) / config.eval_batch_size)
  batches = pipeline.eval_batches(config.data, config.eval_batch_size // jax.process_count(),
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())
  bar = tqdm(batches, total=n_batches, desc="eval", disable=not progress or
             jax.process_index() > 0, leave=False)
  for batch in bar:
    out = jax.device_get(driver.evaluate(state, batch))
    total = out if not total else jax.tree.map(np.add, total, out)
  return seg_metrics.scores(total)


def _scalars(scores):
  return {k: v for k, v in scores.items() if isinstance(v, float)}


def train_and_evaluate(run, workdir):
  """Trains `config.model` on `config.data`, evaluating and checkpointing.
  `run`: a config (checked here, before the workdir or the dataset is touched)
  or the `assemble.Prepared` of one (checked where the program started).

  Raises `preemption.Stopped` after saving the step at which a stop signal
  ended the run, and also when the signal came during the last step, the
  final evaluation or the final save (the run is then complete): a caller
  that goes on to other work (a study's next run) stops too.
  """
  config, info, model = assemble.prepare(run)
  stop = preemption.stop_request(config)
  pipeline.check_splits(config.data)  # every data file read once before step 1 (cached)
  os.makedirs(workdir, exist_ok=True)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  state, schedule = assemble.create_state(config, model, init_rng)
  parameter_overview.log_parameter_overview(state.params)
  with stop:  # until the last save is committed: a signal never interrupts it
    ckpt = checkpoint.Checkpoints(
        workdir, keep=config.keep_checkpoints, description=checkpoint.describe(config, info),
        timeout_s=config.get("checkpoint_timeout_s", checkpoint.DEFAULT_TIMEOUT_S))
    try:
      state, window = _resume(config, workdir, ckpt, state)
      # A resumed run's first step replaces whatever an interrupted run logged from there on.
      writer = tensorboard.create_writer(workdir, purge_step=int(state.step) + 1,
                                         just_logging=jax.process_index() > 0)
      try:
        scores = _train(config, workdir, info, state, dropout_rng, schedule, ckpt, writer,
                        stop, window)
      finally:
        writer.close()
    finally:
      ckpt.close()
  if stop.requested:  # too late to stop before the last step: the caller must still stop
    raise preemption.Stopped(stop.signal_name, config.num_train_steps, ckpt.directory,
                             finished=True)
  return scores


def _resume(config, workdir, ckpt, state):
  """(state, open averaging window) from W's newest readable checkpoint, or
  the fresh / init_from state and []. Refuses a resume that would change the
  run before W/config.json is written (`resume.check_resume`)."""
  saved = ckpt.saved_description()
  restored = ckpt.restore(state)
  window = []
  if restored is not None:
    step = int(restored.step)
    changed = resume.check_resume((saved or {}).get("config"), config, step, workdir)
    if changed:
      logging.warning("config.change_schedule=True: following the new learning-rate "
                      "schedule from step %d (%s)", step, "; ".join(changed))
    window = resume.window_from_json(ckpt.saved_window(step))
  if jax.process_index() == 0:  # once W is ours and the config fits its checkpoints
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  if restored is not None:
    logging.info("Resuming from step %d in %s", int(restored.step), workdir)
    return restored, window
  if config.get("init_from"):
    state = assemble.load_init(state, config.init_from, config.data.get("channels", 3))
  return state, window


def _stop(stop, step, state, ckpt, window, workdir, history):
  """Saves `step` (unless already saved) with its open window and raises Stopped."""
  if ckpt.latest_step() != step:
    ckpt.save(step, state, window=resume.window_to_json(window))
  save_history(workdir, history)
  raise preemption.Stopped(stop.signal_name, step, ckpt.directory)


def _newest_checkpoint(ckpt):
  step = ckpt.latest_step()
  if step is None:
    return f"no checkpoint was written yet in {ckpt.directory}"
  return f"the newest checkpoint is step {step} in {ckpt.directory}"


def step_events(config, step):
  """(evaluated, saved, logged) at `step`: evaluation every eval_every_steps and at
  the end, a checkpoint there and every checkpoint_every_steps, a log line there
  and every log_every_steps (averaging windows also end at checkpoints, so a
  resumed run logs what an uninterrupted one does)."""
  evaluated = step % config.eval_every_steps == 0 or step == config.num_train_steps
  saved = evaluated or step % config.checkpoint_every_steps == 0
  return evaluated, saved, saved or step % config.log_every_steps == 0


def _fetch(pending, ckpt):
  """Host copies of the (step, metrics) device values; stops at the first
  non-finite step (the state never took it: see `step.train_step`)."""
  values = jax.device_get([m for _, m in pending])
  for (step, _), m in zip(pending, values):
    if not m["finite"]:
      raise FloatingPointError(
          f"non-finite loss ({m['loss']}) or gradient norm ({m['grad_norm']}) "
          f"at step {step}; training stopped, {_newest_checkpoint(ckpt)}. Lower "
          "config.optimizer.learning_rate or set config.optimizer.grad_clip.")
  return values


def _train_summary(window, learning_rate, images_per_s):
  """Scalars logged for a window of per-step host metrics."""
  summary = {f"train_{k}": float(np.mean([m[k] for m in window]))
             for k in ("loss", "pixel_acc", "grad_norm")}
  return dict(summary, learning_rate=learning_rate, train_images_per_s=images_per_s)


def _start(config, workdir, info, state, ckpt):
  """The driver (with the state on its devices) and the batch iterator from the
  state's step on; a finished run first prints its saved scores."""
  start_step = int(state.step)
  if start_step == config.num_train_steps and jax.process_index() == 0:
    print(resume.saved_scores_line(workdir, start_step, ckpt.metrics(start_step)))
  driver = assemble.make_driver(config, info, assemble.class_weights(config, info))
  batches = pipeline.train_batches(config.data, config.batch_size, seed=config.seed,
                                   start_step=start_step, process_index=jax.process_index(),
                                   process_count=jax.process_count())
  logging.info("Training %s from step %d to %d on %d devices (%s driver)",
               config.model.name, start_step, config.num_train_steps, driver.num_devices,
               config.parallel)
  return driver, driver.put_state(state), batches


def _record_eval(step, scores, writer, history, workdir):
  """Logs an evaluation's scalars and appends its mIoU / boundary IoU to the history."""
  writer.write_scalars(step, {f"eval_{k}": v for k, v in _scalars(scores).items()})
  for key in ("mean_iou", "boundary_iou"):
    history.setdefault(f"eval_{key}", []).append((step, scores[key]))
  save_history(workdir, history)


def _train(config, workdir, info, state, rng, schedule, ckpt, writer, stop, window):
  """The loop: metrics stay on the device until a log, eval or save step, so
  the host prepares the next batch while the device runs this one. `window`:
  the per-step metrics since the last log (saved by a stopped run)."""
  start_step = int(state.step)
  driver, state, batches = _start(config, workdir, info, state, ckpt)
  report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                           writer=writer)
  history, window, scores = load_history(workdir, start_step), list(window), None
  pending, timed, t0 = [], 0, time.time()
  if start_step < config.num_train_steps and stop.should_stop_at_start(start_step):
    _stop(stop, start_step, driver.to_host(state), ckpt, window, workdir, history)
  for step in range(start_step + 1, config.num_train_steps + 1):
    state, metrics = driver.train(state, next(batches), rng)
    pending.append((step, metrics))
    report(step)
    timed += 1
    evaluated, saved, logged = step_events(config, step)
    if logged or step == start_step + 1:
      window += _fetch(pending, ckpt)
      pending = []
    if logged:
      summary = _train_summary(window, float(schedule(step - 1)),
                               config.batch_size * timed / max(time.time() - t0, 1e-9))
      writer.write_scalars(step, summary)
      history.setdefault("train_loss", []).append((step, summary["train_loss"]))
      window, timed, t0 = [], 0, time.time()
    if evaluated:
      with report.timed("eval"):
        scores = evaluate(driver, state, config, info)
      _record_eval(step, scores, writer, history, workdir)
    if saved:
      ckpt.save(step, driver.to_host(state), scores if evaluated else None)
    if stop.should_stop(step) and step < config.num_train_steps:
      window += _fetch(pending, ckpt)
      _stop(stop, step, driver.to_host(state), ckpt, window, workdir, history)
    if step == start_step + 1 or evaluated:
      timed, t0 = 0, time.time()  # throughput excludes compilation and eval
  save_history(workdir, history)
  if jax.process_index() == 0 and history:
    viz.plot_curves(os.path.join(workdir, "curves.png"), history)
  return scores
