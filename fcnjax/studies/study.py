"""Studies: arms x paired seeds, trained by one protocol, scored once on a held-out split.

The protocol (every study follows it; `experiments/results/*/README.md` repeat it):
* Three disjoint splits: train; selection (`config.data.eval_split`, the
  curves, the budget and any choice); test (`TEST_SPLIT`), scored once per
  run with its final weights, nothing chosen on it.
* The budget is `config.num_train_steps`, fixed in advance by a pilot on
  the selection split; every run reports how much its selection mIoU still
  gained over its last 20 % of steps (`plateau_gain`), so a run caught while
  escaping a plateau shows.
* One scoring rule: the final weights (the checkpoint at num_train_steps),
  the same for a fresh and a resumed study; scores are cached per run.
* Paired seeds: seed s is the same data order (and init, where shapes
  allow) in every arm; contrasts are tested on per-seed differences
  (`fcnjax.stats`).

`run_study(config, workdir, arms, seeds, contrasts)` trains every (arm,
seed), scores it on the test and train splits, and writes results.json,
results.md and the figures (`fcnjax.studies.study_report`).
"""
import json
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from fcnjax import metrics, stats
from fcnjax.studies import experiment
from fcnjax.studies import study_report as report
from fcnjax.train import history

SEED = "seed"
TEST_SPLIT = "test"
SCORED_SPLITS = ("test", "train")
METRICS = ("pixel_acc", "mean_acc", "mean_iou", "bf", "boundary_iou")


def kept_bytes(model, input_shape):
  """Bytes per image a model keeps for its decoder: the leaves it sows into
  'intermediates' (switches: 1 byte per pooled element; FCN skip maps: their
  float32 features), and the float32 bytes of its first layer's feature map
  (the reference for SegNet's storage multiplier)."""
  def apply(x):
    variables = {k: v for k, v in model.init(jax.random.key(0), x).items()
                 if k != "intermediates"}
    _, state = model.apply(variables, x, mutable=["intermediates"],
                           capture_intermediates=lambda m, _: m.name == "conv1_1")
    return state["intermediates"]
  sown = jax.eval_shape(apply, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  first, kept = 0, 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(sown)[0]:
    size = int(np.prod(leaf.shape[1:])) * leaf.dtype.itemsize
    if "__call__" in jax.tree_util.keystr(path):
      first = first or int(np.prod(leaf.shape[1:])) * 4
    else:
      kept += size
  return {"kept_bytes": kept, "first_layer_bytes": first,
          "storage_multiplier": kept / first if first else float("nan")}


class _Timer:
  """One config's compiled train step and eval forward on fixed random batches."""

  def __init__(self, config):
    from fcnjax.data import pipeline
    from fcnjax.train import assemble
    from fcnjax.train import step as step_lib
    info = pipeline.get_info(config.data)
    self.model = assemble.build_model(config, info)
    state, _ = assemble.create_state(config, self.model, jax.random.key(config.seed))
    self.params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
    self.driver = assemble.make_driver(config, info)
    self.size = size = config.data.crop_size
    rng = np.random.default_rng(0)
    images = lambda n: rng.normal(size=(n, size, size, 3)).astype(np.float32)
    self.batch = {"image": images(config.batch_size),
                  "label": rng.integers(0, info.num_classes, (config.batch_size, size, size),
                                        dtype=np.int32)}
    self.eval_images = jnp.asarray(images(config.eval_batch_size))
    self.predict = jax.jit(step_lib.predict_step)
    self.host_state = jax.tree.map(jnp.copy, state)  # the train step donates `state`
    self.state, self.key = self.driver.put_state(state), jax.random.key(0)
    mem = self.driver.train_step.lower(self.state, self.driver.put_batch(self.batch),
                                       self.key).compile().memory_analysis()
    self.peak_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes -
                       mem.alias_size_in_bytes + mem.temp_size_in_bytes
                       ) if mem is not None else float("nan")
    self.time_step(1), self.time_inference(1)  # warm-up

  def time_step(self, steps):
    start = time.perf_counter()
    for _ in range(steps):
      self.state, out = self.driver.train(self.state, self.batch, self.key)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps * 1e3

  def time_inference(self, steps):
    """ms per image of the eval forward (argmax included)."""
    start = time.perf_counter()
    for _ in range(steps):
      out = self.predict(self.host_state, self.eval_images)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps / len(self.eval_images) * 1e3


def model_costs(configs, steps=5, repeats=3):
  """{arm: config} -> {arm: params, step ms, inference ms / image, compiled
  peak MB, kept bytes, first-layer bytes, storage multiplier}.

  Train step: the real driver on config.batch_size random crops; inference:
  the eval forward on config.eval_batch_size images of the crop size. The
  arms are timed in interleaved rounds of `steps` and keep their fastest,
  so load from other processes falls on all alike. Peak: XLA's memory
  analysis of the compiled train step (arguments + outputs - aliased + temps).
  """
  timers = {name: _Timer(config) for name, config in configs.items()}
  step_ms = {name: float("inf") for name in configs}
  infer_ms = dict(step_ms)
  for _ in range(repeats):
    for name, timer in timers.items():
      step_ms[name] = min(step_ms[name], timer.time_step(steps))
      infer_ms[name] = min(infer_ms[name], timer.time_inference(steps))
  return {name: {"params": t.params, "step_ms": step_ms[name], "infer_ms": infer_ms[name],
                 "peak_mb": t.peak_bytes / 2 ** 20,
                 **kept_bytes(t.model, (1, t.size, t.size, 3))}
          for name, t in timers.items()}


def score_split(config, state, info, split):
  """The final weights on one split: `segmentation_scores` (G = pixel_acc,
  C = mean_acc, mIoU, per-class IoU), boundary IoU and BF (`metrics`)."""
  from fcnjax.data import pipeline
  from fcnjax.train import step as step_lib
  data = experiment.with_fields(config, {"data.eval_split": split, "data.num_eval": None}).data
  predict = jax.jit(step_lib.predict_step)
  c = info.num_classes
  hist, inter, union, bf = np.zeros((c, c), np.int64), 0, 0, []
  for batch in pipeline.eval_batches(data, config.eval_batch_size):
    preds, labels = np.asarray(predict(state, batch["image"])[0]), batch["label"]
    hist += np.asarray(metrics.confusion_matrix(labels, preds, c))
    i, u = metrics.boundary_counts(labels, preds, c, config.boundary_width)
    inter, union = inter + np.asarray(i), union + np.asarray(u)
    bf += [np.nanmean(s) for s in (metrics.boundary_f1(l, p, c) for l, p in zip(labels, preds))
           if np.isfinite(s).any()]
  scores = metrics.segmentation_scores(hist)
  scores["boundary_iou"] = metrics.mean_boundary_iou(inter, union)
  scores["bf"] = float(np.mean(bf)) if bf else float("nan")
  scores["num_images"] = len(bf)
  return scores


def _cached_scores(run_dir, budget):
  """RUN/scores.json when it holds the scores of the finished run (step =
  budget), else None."""
  path = os.path.join(run_dir, "scores.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cached = json.load(f)
  return cached if cached.get("step") == budget else None


def score_run(config, run_dir):
  """{split: scores} of the run's final checkpoint, cached in RUN/scores.json
  (recomputed if the checkpoint's step changed). Refuses an unfinished run."""
  from fcnjax.inference import restore
  cached = _cached_scores(run_dir, config.num_train_steps)
  if cached is not None:
    return cached
  state, info = restore(config, run_dir, which="latest")
  if int(state.step) != config.num_train_steps:
    raise ValueError(f"{run_dir}: the newest checkpoint is step {int(state.step)}, not the "
                     f"budget's {config.num_train_steps}; re-run the study to finish it")
  scores = {"step": int(state.step),
            **{split: score_split(config, state, info, split) for split in SCORED_SPLITS}}
  with open(os.path.join(run_dir, "scores.json"), "w") as f:
    json.dump(scores, f, indent=2)
  return scores


def plateau_gain(points, fraction=0.2):
  """Gain of a curve [(step, value), ...] over its last `fraction` of steps:
  the last value minus the value at the last point at or before
  (1 - fraction) * final step (NaN with fewer than two points)."""
  if len(points) < 2:
    return float("nan")
  final = points[-1][0]
  before = [v for s, v in points if s <= (1 - fraction) * final]
  return float(points[-1][1] - before[-1]) if before else float("nan")


def train_run(config, run_dir):
  """Trains (or resumes) one run to its budget, then `score_run`."""
  from fcnjax.train import loop
  loop.train_and_evaluate(config, run_dir)
  return score_run(config, run_dir)


def run_arms(config, workdir, arms, seeds, log=print):
  """Trains every (arm, seed) in WORKDIR/<arm>,seed=<s>/ -> one dict per run
  ('wall_s': this invocation's time for it; 'cached': it was already trained
  and scored, so that time is only the check)."""
  configs = {(a, s): experiment.with_fields(config, {**fields, SEED: int(s)})
             for a, fields in arms.items() for s in seeds}
  experiment.check_configs({f"{a},seed={s}": c for (a, s), c in configs.items()})
  runs = []
  for k, ((arm, seed), cfg) in enumerate(configs.items(), start=1):
    name = f"{arm},seed={seed}"
    log(f"[{k}/{len(configs)}] {name}")
    start = time.time()
    run_dir = os.path.join(workdir, name)
    cached = _cached_scores(run_dir, cfg.num_train_steps) is not None  # an earlier invocation's
    scores = train_run(cfg, run_dir)
    curves = history.load_history(run_dir)
    runs.append({"arm": arm, SEED: int(seed), "name": name, "fields": arms[arm],
                 "wall_s": round(time.time() - start, 1), "cached": cached,
                 "scores": scores, "curves": curves,
                 "plateau_gain": plateau_gain(curves.get("eval_mean_iou", []))})
  return runs


def summarize(runs, arms):
  """{arm: {split: {metric: stats.describe(per-seed values)}}, plus per-seed
  mIoU and the largest plateau gain}."""
  out = {}
  for arm in arms:
    members = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r[SEED])
    out[arm] = {split: {m: stats.describe([r["scores"][split][m] for r in members])
                        for m in METRICS} for split in SCORED_SPLITS}
    out[arm]["seeds"] = [r[SEED] for r in members]
    out[arm]["plateau_gain_max"] = max(r["plateau_gain"] for r in members)
  return out


def test_scores(runs, arms, metric="mean_iou"):
  """{arm: [test score per seed, in seed order]} (seeds paired across arms)."""
  return {arm: [r["scores"][TEST_SPLIT][metric] for r in
                sorted((r for r in runs if r["arm"] == arm), key=lambda r: r[SEED])]
          for arm in arms}


def provenance():
  """The commit, the machine and the library versions a result came from."""
  import flax
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except OSError:
    commit = ""
  return {"commit": commit or "unknown", "machine": platform.platform(),
          "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
          "jax": jax.__version__, "flax": flax.__version__,
          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}


def run_study(config, workdir, arms, seeds, contrasts, log=print):
  """Trains and scores every arm x seed, then the tables, contrasts and figures.

  arms: {label: {dotted field: value}}; seeds: the paired seeds;
  contrasts: the pre-registered ones, {name: (weights {arm: w}, 'A', 'B')}
  (`fcnjax.stats.compare`), those whose arms all run; every pair of arms is
  compared as well.
  Returns the results dict written to WORKDIR/results.json.
  """
  if len(seeds) < 2:
    raise ValueError(f"--seeds={seeds}: a paired comparison needs at least 2 seeds (use >= 5)")
  start = time.time()
  contrasts = {k: v for k, v in contrasts.items() if set(v[0]) <= set(arms)}  # arms that ran
  configs = {a: experiment.with_fields(config, fields) for a, fields in arms.items()}
  costs = model_costs(configs)  # first, while nothing else runs in this process
  for name, cost in costs.items():
    log(f"cost {name}: {cost}")
  runs = run_arms(config, workdir, arms, seeds, log)
  scores = test_scores(runs, arms)
  results = {"protocol": report.PROTOCOL, "provenance": provenance(),
             "config": json.loads(config.to_json_best_effort()), "arms": arms,
             "seeds": [int(s) for s in seeds], "costs": costs, "runs": runs,
             "summary": summarize(runs, arms),
             "contrasts": stats.compare(scores, contrasts),
             "pairwise": stats.compare(scores, stats.pairwise(list(arms)))}
  results["wall_s"] = round(time.time() - start, 1)
  report.write(workdir, config, results, log=log)
  return results
