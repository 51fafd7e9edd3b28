"""Studies: a grid of runs plus what each model costs, curves and a shared prediction grid.

`run_study(config, workdir, points)` trains every point (a {field: value} dict;
seeds included), then writes to WORKDIR:
  results.json  runs, summary (mean ± std over seeds, per-seed values), costs
  results.md    the table: scores (mean ± std), parameters, train step ms, peak
                memory of the compiled train step, bytes kept for unpooling
  ablation.png  bars with error bars (std over seeds)
  curves.png    eval mIoU / boundary IoU / train loss per variant (mean over seeds)
  predictions.png  the same validation images segmented by every variant
"""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from fcnjax import experiment, viz

SEED = "seed"


def define_flags(default_config, default_workdir):
  """The flags of a study script: --config (+ overrides), --workdir, --seeds."""
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", default_config, "Base config of every run.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", default_workdir, "Where the runs and results go.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every variant.")


def unpool_bytes(model, input_shape):
  """Bytes per image that unpooling keeps, from the model's sown switches.

  Returns {'switches_uint8', 'indices_int64', 'prepool_f32'}: the switches
  as stored (1 byte per pooled element), the same as int64 indices (8 bytes),
  and the pre-pool activation (window 2x2: 4 float32 values per pooled
  element) that an unpool without switches would have to keep. Zeros for a
  model without switch pools.
  """
  def apply(x):
    variables = model.init(jax.random.key(0), x)
    return model.apply(variables, x, mutable=["intermediates"])[1]
  sown = jax.eval_shape(apply, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  leaves = jax.tree.leaves(sown)
  pooled = sum(int(np.prod(s.shape[1:])) for s in leaves)
  if leaves and any(s.dtype.itemsize != 1 for s in leaves):
    raise ValueError("switches must be stored in one byte")
  return {"switches_uint8": pooled, "indices_int64": 8 * pooled, "prepool_f32": 16 * pooled}


class _StepTimer:
  """One config's compiled train step on a fixed random batch, ready to time."""

  def __init__(self, config):
    from fcnjax.data import pipeline
    from fcnjax.train import loop
    info = pipeline.get_info(config.data)
    self.model = loop.build_model(config, info)
    state, _ = loop.create_state(config, self.model, jax.random.key(config.seed))
    self.params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
    self.driver = loop.make_driver(config, info)
    self.size = size = config.data.crop_size
    rng = np.random.default_rng(0)
    self.batch = {
        "image": rng.normal(size=(config.batch_size, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, info.num_classes, (config.batch_size, size, size),
                              dtype=np.int32)}
    self.state, self.key = self.driver.put_state(state), jax.random.key(0)
    mem = self.driver.train_step.lower(self.state, self.driver.put_batch(self.batch),
                                       self.key).compile().memory_analysis()
    self.peak_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes -
                       mem.alias_size_in_bytes + mem.temp_size_in_bytes
                       ) if mem is not None else float("nan")
    self.time(1)  # warm-up

  def time(self, steps):
    """Mean ms per step over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
      self.state, out = self.driver.train(self.state, self.batch, self.key)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps * 1e3


def model_costs(configs, steps=5, repeats=3):
  """{name: config} -> {name: parameters, step ms, compiled peak MB, unpooling bytes}.

  The step is the real driver's `train_step` on a batch of config.batch_size
  random crops of config.data.crop_size. The models are timed in interleaved
  rounds of `steps` steps and each keeps its fastest round, so load from other
  processes falls on all of them alike. Peak bytes: XLA's memory analysis of
  the compiled step (arguments + outputs - aliased + temporaries).
  """
  timers = {name: _StepTimer(config) for name, config in configs.items()}
  best = {name: float("inf") for name in configs}
  for _ in range(repeats):
    for name, timer in timers.items():
      best[name] = min(best[name], timer.time(steps))
  costs = {}
  for name, timer in timers.items():
    config = configs[name]
    unpool = unpool_bytes(timer.model, (1, timer.size, timer.size, 3))
    uses_switches = config.model.name != "decoder" or config.model.upsample == "max_unpool"
    costs[name] = {"params": timer.params, "step_ms": best[name],
                   "peak_mb": timer.peak_bytes / 2 ** 20,
                   "unpool_bytes": unpool["switches_uint8"] if uses_switches else 0,
                   **{f"{k}_if_switches": v for k, v in unpool.items()}}
  return costs


def load_history(run_dir):
  path = os.path.join(run_dir, "history.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def mean_curves(workdir, runs, label):
  """{curve name: {variant: [(step, mean over seeds), ...]}} from each run's history."""
  curves = {}
  for run in runs:
    for name, points in load_history(os.path.join(workdir, run["name"])).items():
      per_step = curves.setdefault(name, {}).setdefault(label(run), {})
      for step, value in points:
        per_step.setdefault(step, []).append(value)
  return {name: {v: sorted((s, float(np.mean(x))) for s, x in steps.items())
                 for v, steps in by_variant.items()} for name, by_variant in curves.items()}


def predictions_by_variant(config, workdir, runs, label, num_images=4):
  """Images, labels and {variant: preds} on the first validation images (seed of the first run)."""
  from fcnjax.data import pipeline
  from fcnjax.inference import restore
  from fcnjax.train import step as step_lib
  batch = next(iter(pipeline.eval_batches(config.data, num_images)))
  first_seed = runs[0].get(SEED)
  preds, info = {}, None
  for run in runs:
    if run.get(SEED) != first_seed:
      continue
    cfg = experiment.with_fields(config, {k: run[k] for k in run["fields"]})
    state, info = restore(cfg, os.path.join(workdir, run["name"]))
    preds[label(run)] = np.asarray(jax.jit(step_lib.predict_step)(state, batch["image"])[0])
  images = pipeline.denormalize(batch["image"], config.data.normalization)
  return images, batch["label"], preds, info


def study_table(summary, costs, label, metrics):
  rows = []
  for row in summary:
    cost = costs[label(row)]
    rows.append({"variant": label(row), "seeds": row["n"],
                 **{m: experiment.mean_std(row, m) for m in metrics},
                 f"{metrics[0]} per seed": " / ".join(f"{v:.3f}"
                                                     for v in row[f"{metrics[0]}_values"]),
                 "params": f"{cost['params']:,}", "step ms": f"{cost['step_ms']:.0f}",
                 "peak MB": f"{cost['peak_mb']:.1f}",
                 "unpool bytes/img": f"{cost['unpool_bytes']:,}"})
  return viz.markdown_table(rows, list(rows[0]))


def switch_memory_table(costs):
  """Bytes per image each switch-unpooling model keeps, three ways (one row per model)."""
  rows = []
  for name, c in costs.items():
    if c["unpool_bytes"]:
      rows.append({"model": name, "switches uint8": f"{c['switches_uint8_if_switches']:,}",
                   "indices int64": f"{c['indices_int64_if_switches']:,}",
                   "pre-pool f32": f"{c['prepool_f32_if_switches']:,}"})
  return viz.markdown_table(rows, list(rows[0])) if rows else ""


def run_study(config, workdir, points, metrics=experiment.DEFAULT_METRICS, label=None,
              log=print):
  """Trains every point, then tables, costs and figures (see the module docstring).

  label: point -> the variant's name (default: its non-seed values joined).
  """
  fields = list(points[0])
  label = label or experiment.default_label(fields, SEED)
  variants = {label(p): experiment.with_fields(config, p) for p in points}
  costs = model_costs(variants)  # first, while nothing else runs in this process
  for name, cost in costs.items():
    log(f"cost {name}: {cost}")
  runs = experiment.run_points(config, workdir, points, metrics, log=log)
  for run in runs:
    run["fields"] = fields
  summary = experiment.aggregate(runs, fields, metrics)
  table = study_table(summary, costs, label, metrics)
  memory = switch_memory_table(costs)
  report = table + ("\n\nBytes kept per image for unpooling:\n\n" + memory if memory else "")
  experiment.write_results(workdir, runs, summary, fields, metrics, label, table=report,
                           extra={"costs": costs})
  curves = mean_curves(workdir, runs, label)
  if curves:
    viz.plot_curves(os.path.join(workdir, "curves.png"), curves)
  images, labels, preds, info = predictions_by_variant(config, workdir, runs, label)
  viz.save_prediction_grid(os.path.join(workdir, "predictions.png"), images, labels, preds,
                           info.palette, class_names=info.class_names)
  return runs, summary, table
