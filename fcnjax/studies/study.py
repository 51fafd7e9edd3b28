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

* Scores are cached per run under a key of what determines them
  (`run_key`: the run's resolved config and a hash of the numerics code,
  ops / models / train / data / metrics); a run whose key changed is moved
  aside (RUN.stale-<old key>/, nothing deleted) and retrained, not read back.
* An arm's seeds can train as one vmapped program (`run_arms(vmap_seeds=)`;
  'auto': on an accelerator only; `fcnjax.train.seeds`), each run's workdir
  written as its sequential run writes it, RUN/run.json saying `trained_as`.
* Each run records where it ran (`provenance`: commit, CPU, jax / jaxlib /
  flax versions) in RUN/run.json; a study refuses to mix commits or
  library versions across its runs, or CPUs within a seed (so no paired
  difference straddles two machines), unless allow_mixed.

`run_study(config, workdir, arms, seeds, contrasts)` trains every (arm,
seed), scores it on the scored splits (test first), and writes
results.json, results.md and the figures (`fcnjax.studies.study_report`);
`status` lists the runs done and left; `pilot` trains seed 0 of arms and
reports each selection curve's last-20 % gain; `run_grid` (fcnjax-ablate)
runs a grid of swept fields through the same `run_arms`.
"""
import ast
import functools
import glob
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

import fcnjax
from fcnjax import metrics, stats
from fcnjax.data import pipeline
from fcnjax.inference import restore
from fcnjax.studies import experiment
from fcnjax.studies import study_report as report
from fcnjax.train import assemble, history, loop
from fcnjax.train import seeds as seeds_lib
from fcnjax.train import step as step_lib

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

  def __init__(self, run):
    config, info, self.model = assemble.prepare(run)
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
    self.host_state = jax.tree.map(jnp.copy, state)  # the train step donates `state`
    # One compile serves the FLOP count and the timing.
    self.predict = jax.jit(step_lib.predict_step).lower(self.host_state,
                                                        self.eval_images).compile()
    self.state, self.key = self.driver.put_state(state), jax.random.key(0)
    self.device_batch = self.driver.put_batch(self.batch)
    # One compile serves the peak memory and the timing.
    self.train_step = self.driver.train_step.lower(self.state, self.device_batch,
                                                   self.key).compile()
    mem = self.train_step.memory_analysis()
    self.peak_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes -
                       mem.alias_size_in_bytes + mem.temp_size_in_bytes
                       ) if mem is not None else float("nan")
    cost = self.predict.cost_analysis()
    self.gflops = cost["flops"] / len(self.eval_images) / 1e9 if cost else float("nan")
    self.time_step(1), self.time_inference(1)  # warm-up

  def time_step(self, steps):
    start = time.perf_counter()
    for _ in range(steps):
      self.state, out = self.train_step(self.state, self.device_batch, self.key)
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
  """{arm: config} -> {arm: params, inference GFLOP / image (XLA's cost analysis
  of the eval forward), step ms, inference ms / image, compiled peak MB, kept
  bytes, first-layer bytes, storage multiplier}.

  Train step: the real driver's compiled step on config.batch_size random crops
  already on the device; inference:
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
  return {name: {"params": t.params, "gflops": t.gflops,
                 "step_ms": step_ms[name], "infer_ms": infer_ms[name],
                 "peak_mb": t.peak_bytes / 2 ** 20,
                 **kept_bytes(t.model, (1, t.size, t.size, 3))}
          for name, t in timers.items()}


def score_split(config, state, info, split):
  """The final weights on one split: `metrics.scores` of the summed
  `metrics.counts` (G = pixel_acc, C = mean_acc, mIoU, per-class IoU,
  Boundary IoU) and the mean per-image BF (`metrics.boundary_f1_per_image`)."""
  data = experiment.with_fields(config, {"data.eval_split": split, "data.num_eval": None}).data
  predict = jax.jit(step_lib.predict_labels)
  count = jax.jit(functools.partial(metrics.counts, num_classes=info.num_classes,
                                    width=config.boundary_width))
  total, bf = None, []
  for batch in pipeline.eval_batches(data, config.eval_batch_size):
    preds, labels = predict(state, batch["image"]), batch["label"]
    out = jax.tree.map(lambda t: np.asarray(t, np.int64), count(labels, preds))
    total = out if total is None else jax.tree.map(np.add, total, out)
    bf += metrics.boundary_f1_per_image(labels, np.asarray(preds), info.num_classes)
  scores = metrics.scores(total)
  bf = np.asarray(bf)
  scores["bf"] = metrics.nanmean(bf)
  scores["num_images"] = int(np.isfinite(bf).sum())  # a padded batch's fillers score nothing
  return scores


NUMERICS_CODE = ("ops", "models", "train", "data", "metrics.py")


def _code_text(source):
  """A module's code without what cannot change a number: `ast.dump` of its
  tree with docstrings dropped (comments and layout are not in the tree)."""
  tree = ast.parse(source)
  for node in ast.walk(tree):
    body = getattr(node, "body", None)
    if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
      node.body = body[1:] or [ast.Pass()]
  return ast.dump(tree)


def code_hash():
  """sha256 of the sources that determine a run's numbers (NUMERICS_CODE), as
  code: an edited comment, docstring or line break leaves it (and every
  cached run's key) as it was."""
  root = os.path.dirname(os.path.abspath(fcnjax.__file__))
  digest = hashlib.sha256()
  for entry in NUMERICS_CODE:
    path = os.path.join(root, entry)
    files = [path] if entry.endswith(".py") else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".py"))
    for name in files:
      digest.update(os.path.relpath(name, root).encode())
      with open(name, encoding="utf-8") as f:
        digest.update(_code_text(f.read()).encode())
  return digest.hexdigest()


def run_key(config, code=None):
  """What determines a run's scores: its resolved config and the numerics code."""
  text = json.dumps(json.loads(config.to_json_best_effort()), sort_keys=True)
  return hashlib.sha256(f"{code or code_hash()}\n{text}".encode()).hexdigest()[:16]


def _cached_scores(run_dir, budget, key=None):
  """RUN/scores.json when it holds the scores of the finished run (step =
  budget) under `key` (None: any key), else None."""
  path = os.path.join(run_dir, "scores.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cached = json.load(f)
  if cached.get("step") != budget or (key is not None and cached.get("key") != key):
    return None
  return cached


def _stale_key(run_dir, key):
  """The key RUN was trained under when it differs from `key` (None otherwise)."""
  path = os.path.join(run_dir, "run.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    old = json.load(f).get("key")
  return old if old != key else None


def score_run(run, run_dir, splits=SCORED_SPLITS, key=None):
  """{split: scores} of the run's final checkpoint, cached in RUN/scores.json
  under `key` (recomputed if the step or key changed). Refuses an unfinished run.
  `run`: a config or its `assemble.Prepared`."""
  config = assemble.config_of(run)
  cached = _cached_scores(run_dir, config.num_train_steps, key)
  if cached is not None:
    return cached
  state, info = restore(run, run_dir, which="latest")  # a config is prepared there
  if int(state.step) != config.num_train_steps:
    raise ValueError(f"{run_dir}: the newest checkpoint is step {int(state.step)}, not the "
                     f"budget's {config.num_train_steps}; re-run the study to finish it")
  scores = {"step": int(state.step), "key": key,
            **{split: score_split(config, state, info, split) for split in splits}}
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


def _move_stale(run_dir, key, log):
  """Moves RUN aside (RUN.stale-<old key>/) when it was trained under another key."""
  stale = _stale_key(run_dir, key) if key else None
  if stale:
    aside = f"{run_dir}.stale-{stale}"
    log(f"{run_dir}: trained under key {stale}, now {key}: moved to {aside}, retraining")
    shutil.move(run_dir, aside)


def _record_run(run_dir, key, train_wall_s, **extra):
  """RUN/run.json: the run's key, provenance and training wall time (and `extra`)."""
  record = {"key": key, "provenance": provenance(), "train_wall_s": round(train_wall_s, 1),
            **extra}
  path = os.path.join(run_dir, "run.json")
  if os.path.exists(path):  # a resumed run keeps where it started; its walls add up
    with open(path) as f:
      first = json.load(f)
    record = {**first, "resumed": record,
              "train_wall_s": round(first.get("train_wall_s", 0.0) + train_wall_s, 1)}
  with open(path, "w") as f:
    json.dump(record, f, indent=2)


def logged_wall_s(run_dir):
  """A run's training wall time from its event files: each process's first to last
  logged event, summed over the processes that trained it (so a resumed run counts
  every segment; start-up before a process's first event is not in it)."""
  from tensorboard.backend.event_processing import event_file_loader
  total = 0.0
  for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
    times = [e.wall_time for e in event_file_loader.EventFileLoader(path).Load()]
    total += max(times) - min(times) if times else 0.0
  return round(total, 1)


def train_run(run, run_dir, splits=SCORED_SPLITS, key=None, log=print):
  """Trains (or resumes) one run (a config or its `assemble.Prepared`) to its
  budget under `key`, then `score_run`. A run directory trained under another
  key is moved aside and retrained; the run's key, provenance and training
  wall time go to RUN/run.json."""
  run = assemble.prepare(run)
  _move_stale(run_dir, key, log)
  if _cached_scores(run_dir, run.config.num_train_steps, key) is None:
    start = time.time()
    loop.train_and_evaluate(run, run_dir)
    _record_run(run_dir, key, time.time() - start)
  return score_run(run, run_dir, splits, key)


VMAP_SEEDS = ("auto", True, False)


def use_vmap_seeds(vmap_seeds, num_seeds, log=print):
  """Whether the runner trains each arm's seeds as one vmapped program
  (`fcnjax.train.seeds`); logs the choice and why. 'auto': only on an
  accelerator backend (on this CPU vmapping 4 seeds of the study decoder
  measured 0.56x the sequential throughput: grouped convolutions)."""
  if vmap_seeds not in VMAP_SEEDS or not isinstance(vmap_seeds, (bool, str)):
    raise ValueError(f"vmap_seeds={vmap_seeds!r}; valid: {VMAP_SEEDS}")
  backend = jax.default_backend()
  if num_seeds < 2:
    use, why = False, "a single seed"
  elif vmap_seeds == "auto":
    use = backend != "cpu"
    why = (f"vmap_seeds=auto on the {backend} backend" + (
        "" if use else ": on CPU vmapped seeds measured 0.56x sequential throughput"))
  else:
    use, why = vmap_seeds, f"vmap_seeds={vmap_seeds}"
  how = "each arm's seeds as one vmapped program" if use else "one run after another"
  log(f"seeds: {how} ({why})")
  return use


def train_vmapped(planned, code, splits=SCORED_SPLITS, log=print):
  """Trains, arm by arm, the runs of `planned` ({(arm, seed): (name, run dir,
  assemble.Prepared)}) not yet scored under their key: an arm's seeds as one vmapped
  program (`seeds.train_seeds`; each run's workdir as a sequential run writes
  it), then scores each. An arm with one such seed, or whose seeds would
  resume from different steps, is left to the sequential runner.
  Returns {(arm, seed): training wall s} (the arm's wall / its seeds)."""
  groups = {}
  for (arm, seed), (_, run_dir, run) in planned.items():
    key = run_key(run.config, code)
    if _cached_scores(run_dir, run.config.num_train_steps, key) is None:
      groups.setdefault(arm, []).append((seed, run_dir, run, key))
  walls = {}
  for arm, group in groups.items():
    if len(group) < 2:
      continue
    seeds = [int(seed) for seed, *_ in group]
    for _, run_dir, _, key in group:
      _move_stale(run_dir, key, log)
    log(f"{arm}: seeds {seeds} as one vmapped program")
    start = time.time()
    try:
      seeds_lib.train_seeds([cfg for _, _, cfg, _ in group], [d for _, d, _, _ in group])
    except seeds_lib.UnequalSteps as e:
      log(f"{arm}: {e}")
      continue
    wall = (time.time() - start) / len(group)
    for seed, run_dir, run, key in group:
      _record_run(run_dir, key, wall, trained_as=f"vmapped seeds {seeds}")
      score_run(run, run_dir, splits, key)
      walls[(arm, seed)] = wall
  return walls


def run_configs(config, workdir, arms, seeds):
  """{(arm, seed): (run name, run dir, config)} in study order: seed by seed, every
  arm of a seed before the next seed (a session's runs pair up on its machine)."""
  configs = {(a, s): experiment.with_fields(config, {**fields, SEED: int(s)})
             for s in seeds for a, fields in arms.items()}
  return {k: (f"{k[0]},seed={k[1]}", os.path.join(workdir, f"{k[0]},seed={k[1]}"), c)
          for k, c in configs.items()}


def _run_record(run_dir):
  path = os.path.join(run_dir, "run.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


MIXED_FIELDS = ("commit", "jax", "jaxlib", "flax")


def check_mixing(runs, current, allow_mixed=False):
  """ValueError naming the runs whose commit or library versions differ from
  `current`, whose CPU differs from another run of the same seed, or, where
  some runs trained as vmapped seeds and others one by one, both groups.
  runs: {(arm, seed): run.json record}."""
  diffs = []
  for (arm, seed), record in runs.items():
    prov = record.get("provenance", {})
    for field in MIXED_FIELDS:
      if prov.get(field) != current.get(field):
        diffs.append(f"{arm},seed={seed}: {field} {prov.get(field)!r} (now "
                     f"{current.get(field)!r})")
  by_seed = {}
  for (arm, seed), record in runs.items():
    prov = record.get("provenance", {})  # the thread count can change XLA's summation order
    cpu = (f"{prov.get('cpu')} {prov.get('cpu_id', '')} on {prov.get('machine')} "
           f"({prov.get('cpus_used', prov.get('cpus'))} cores used)")
    by_seed.setdefault(seed, {}).setdefault(cpu, []).append(arm)
  for seed, cpus in by_seed.items():
    if len(cpus) > 1:
      diffs.append(f"seed {seed} ran on {len(cpus)} CPUs: " + "; ".join(
          f"{cpu}: {arms}" for cpu, arms in cpus.items()))
  modes = {}
  for (arm, seed), record in runs.items():  # vmapped seeds differ from sequential by float order
    mode = "vmapped" if str(record.get("trained_as", "")).startswith("vmapped") else "sequential"
    modes.setdefault(mode, []).append(f"{arm},seed={seed}")
  if len(modes) > 1:
    diffs.append("runs trained both ways: " + "; ".join(f"{m}: {r}" for m, r in modes.items()))
  if diffs and not allow_mixed:
    raise ValueError("the study's runs would mix machines or code (--allow_mixed to accept): "
                     + " | ".join(diffs))
  return diffs


def run_arms(config, workdir, arms, seeds, log=print, splits=SCORED_SPLITS, allow_mixed=False,
             vmap_seeds="auto"):
  """Trains every (arm, seed) in WORKDIR/<arm>,seed=<s>/ -> one dict per run
  ('wall_s': this invocation's time for it; 'cached': it was already trained
  and scored under the same key, so that time is only the check).
  vmap_seeds: 'auto' | True | False (`use_vmap_seeds`): each arm's seeds as
  one vmapped program (`train_vmapped`), arm by arm, before the rest."""
  planned = run_configs(config, workdir, arms, seeds)
  prepared = experiment.prepare_all({name: c for name, _, c in planned.values()})
  planned = {k: (name, d, prepared[name]) for k, (name, d, _) in planned.items()}
  code = code_hash()
  done = {k: r for k, (_, d, _) in planned.items() if (r := _run_record(d))}
  check_mixing(done, provenance(), allow_mixed)
  vmapped = (train_vmapped(planned, code, splits, log)
             if use_vmap_seeds(vmap_seeds, len(seeds), log) else {})
  runs = []
  for k, ((arm, seed), (name, run_dir, run)) in enumerate(planned.items(), start=1):
    log(f"[{k}/{len(planned)}] {name}")
    start = time.time() - vmapped.get((arm, seed), 0.0)
    key = run_key(run.config, code)
    cached = ((arm, seed) not in vmapped and
              _cached_scores(run_dir, run.config.num_train_steps, key) is not None)
    scores = train_run(run, run_dir, splits, key, log)
    runs.append(_run_entry(arm, seed, name, arms[arm], run_dir, scores, key, cached,
                           time.time() - start))
  return runs


def _run_entry(arm, seed, name, fields, run_dir, scores, key, cached, wall_s):
  """One run of a study's results: its scores, curves, provenance and times."""
  curves = history.load_history(run_dir)
  record = _run_record(run_dir) or {}
  return {"arm": arm, SEED: int(seed), "name": name, "fields": fields,
          "wall_s": round(wall_s, 1), "cached": cached,
          "key": key, "provenance": record.get("provenance"),
          "logged_wall_s": logged_wall_s(run_dir), "trained_as": record.get("trained_as"),
          "scores": scores, "curves": curves,
          "plateau_gain": plateau_gain(curves.get("eval_mean_iou", []))}


def _config_differences(config, run_dir):
  """The dotted fields where `config` differs from the one RUN saved (config.json);
  a field the saved config lacks is newer than the run and holds its default, the
  behaviour the run had, so it is not a difference."""
  def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
      out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
  with open(os.path.join(run_dir, "config.json")) as f:
    saved = flat(json.load(f))
  now = flat(json.loads(config.to_json_best_effort()))
  return sorted(k for k in saved if saved[k] != now.get(k, "<absent>"))


def read_runs(config, workdir, arms, seeds, log=print, allow_mixed=False):
  """The runs of a study as they were trained and scored, wherever (a pinned
  worktree of another commit): each must be scored at its budget under the key it
  was trained with, with the config this checkout resolves for it; all at one
  commit and library versions, every run of a seed on one CPU (`check_mixing`
  against the first run). Trains and rescores nothing. -> (runs, provenance)."""
  planned = run_configs(config, workdir, arms, seeds)
  prepared = experiment.prepare_all({name: c for name, _, c in planned.values()})
  records, scores, problems = {}, {}, []
  for k, (name, run_dir, _) in planned.items():
    record = _run_record(run_dir) or {}
    budget = prepared[name].config.num_train_steps
    scores[k] = _cached_scores(run_dir, budget, record.get("key"))
    if scores[k] is None:
      problems.append(f"{name}: not trained and scored to step {budget}")
      continue
    differ = _config_differences(prepared[name].config, run_dir)
    if differ and not allow_mixed:
      problems.append(f"{name}: its config differs from this checkout's in {differ}")
    records[k] = record
  if problems:
    raise ValueError(f"{workdir}: cannot report the runs as trained: " + "; ".join(problems)
                     + " (run the study to finish them, from the commit it runs at)")
  first = next(iter(records.values()))["provenance"]
  check_mixing(records, first, allow_mixed)
  runs = []
  for (arm, seed), (name, run_dir, _) in planned.items():
    runs.append(_run_entry(arm, seed, name, arms[arm], run_dir, scores[(arm, seed)],
                           records[(arm, seed)]["key"], True, 0.0))
  log(f"{len(runs)} runs read back, trained at {first.get('commit', '?')[:12]}")
  return runs, first


def grid_arms(sweeps, seed=0):
  """Sweeps [(field, values), ...] -> (arms, seeds): each point of the cross
  product of the fields other than `seed` an arm named by its values
  ('upsample=nearest,variant=8s'; 'base' for none), the `seed` sweep's
  values the paired seeds (else [seed])."""
  points = experiment.grid([(f, v) for f, v in sweeps if f != SEED])
  seeds = [int(s) for s in dict(sweeps).get(SEED, [seed])]
  arms = {experiment.run_name(p) or "base": p for p in points}
  if len(arms) != len(points) or len(set(seeds)) != len(seeds):
    raise ValueError(f"two runs have the same name: repeated points in {sweeps}")
  if not points or not seeds:
    raise ValueError("no runs: the sweep is empty")
  return arms, seeds


def run_grid(config, workdir, sweeps, metrics=experiment.DEFAULT_METRICS, splits=None,
             log=print, allow_mixed=False):
  """`fcnjax-ablate`: the cross product of `sweeps` as arms x seeds (`grid_arms`),
  run by `run_arms` (one runner, cache key, provenance and scoring rule: the
  final weights) and scored on `splits` (default: the config's eval split).
  Writes WORKDIR/results.json (every run as `run_arms` returns it, plus its
  swept values and the first split's `metrics`), results.md and ablation.png
  (mean ± std over seeds per arm). Returns (runs, summary)."""
  arms, seeds = grid_arms(sweeps, config.seed)
  splits = tuple(splits or (config.data.eval_split,))
  runs = run_arms(config, workdir, arms, seeds, log, splits, allow_mixed)
  runs = [{**run, **run["fields"], **{m: float(run["scores"][splits[0]][m]) for m in metrics}}
          for run in runs]
  fields = [f for f, _ in sweeps if f != SEED] + [SEED]
  summary = experiment.aggregate(runs, fields, metrics)
  experiment.write_results(workdir, runs, summary, fields, metrics,
                           extra={"splits": list(splits), "provenance": provenance()})
  return runs, summary


def status(config, workdir, arms, seeds, as_trained=False):
  """Rows (arm, seed, its budget in steps, state, train wall s, selection-mIoU
  gain over the last 20 % of steps, final selection mIoU, the selection curve
  [(step, value)]) of every planned run: 'done' (scored under its current key),
  'stale' (trained under another key), 'partial' (checkpoints short of the
  budget), 'left'; and an estimate of the time left in seconds of training
  (each run not done at its arm's mean training wall over its done runs, or
  all done runs' mean where its arm has none; NaN before any run is done). The gain is read from the
  run's selection curve whatever its key (the test scores are not read), so
  the first seeds of a running study are its budget pilot (`flatness`).
  as_trained: a run's key is the one it recorded, as `read_runs` reads it (the
  runs of a pinned worktree, seen from another checkout): none is 'stale'."""
  code = code_hash()
  rows, walls = [], {}  # walls: {arm: training walls of its done runs}
  for (arm, seed), (name, run_dir, cfg) in run_configs(config, workdir, arms, seeds).items():
    key, record = run_key(cfg, code), _run_record(run_dir) or {}
    key = record.get("key", key) if as_trained else key
    if _cached_scores(run_dir, cfg.num_train_steps, key) is not None:
      state = "done"
      if record.get("train_wall_s") is not None:
        walls.setdefault(arm, []).append(record["train_wall_s"])
    elif record.get("key") not in (None, key):
      state = "stale"
    elif os.path.isdir(os.path.join(run_dir, "checkpoints")):
      state = "partial"
    else:
      state = "left"
    curve = history.load_history(run_dir).get("eval_mean_iou", []) if record else []
    finished = bool(curve) and curve[-1][0] == cfg.num_train_steps
    rows.append({"arm": arm, SEED: int(seed), "steps": cfg.num_train_steps, "state": state,
                 "train_wall_s": (None if record.get("train_wall_s") is None
                                  else round(record["train_wall_s"])),
                 "gain last 20 %": plateau_gain(curve) if curve else None,
                 "selection mIoU": round(float(curve[-1][1]), 4) if finished else None,
                 "curve": curve})
  every = [w for arm_walls in walls.values() for w in arm_walls]
  eta = sum(float(np.mean(walls.get(r["arm"]) or every)) for r in rows
            if r["state"] != "done") if every else float("nan")
  return rows, eta


def pilot(config, workdir, arms, seeds=(0,), flat=0.01, log=print):
  """Trains each arm's `seeds` in WORKDIR/<arm>,seed=<s>/ and reports every
  selection-mIoU curve with its gain over the last 20 % of steps; an arm is
  flat when its median seed gains less than `flat` (its worst seed reported).
  The test split is never touched. Returns (rows per run, rows per arm)."""
  runs = []
  for arm, fields in arms.items():
    for seed in seeds:
      run_dir = os.path.join(workdir, f"{arm},seed={seed}")
      cfg = experiment.with_fields(config, {**fields, SEED: int(seed)})
      loop.train_and_evaluate(cfg, run_dir)
      curve = history.load_history(run_dir)["eval_mean_iou"]
      gain = plateau_gain(curve)
      log(f"{arm}, seed {seed}: gain over the last 20 % {gain:+.3f}")
      runs.append({"arm": arm, SEED: int(seed), "steps": cfg.num_train_steps,
                   "curve": curve, "selection mIoU": " ".join(f"{v:.3f}" for _, v in curve),
                   "gain last 20 %": f"{gain:+.3f}"})
  return runs, flatness(runs, flat)


def flatness(rows, flat=0.01):
  """Per arm of `rows` (dicts with 'arm' and 'gain last 20 %', a number or a
  '+0.012' string; None: not trained yet): the seeds, the median and the worst
  gain, and 'flat' when the median seed gains less than `flat` (the
  protocol's budget rule)."""
  per_arm = {}
  for row in rows:
    if row.get("gain last 20 %") is not None:
      per_arm.setdefault(row["arm"], []).append(float(row["gain last 20 %"]))
  return [{"arm": arm, "seeds": len(gains), "median gain": f"{np.median(gains):+.3f}",
           "worst gain": f"{max(gains):+.3f}",
           "flat": "yes" if np.median(gains) < flat else "no"}
          for arm, gains in per_arm.items()]


def pilot_power(rows, contrasts, margin=stats.MARGIN, power=0.8):
  """The first seeds as a power pilot, from each finished run's final selection
  mIoU (rows of `status`; the test split is not read): per contrast {name:
  (weights, 'A', 'B')}, over the seeds every one of its arms finished (3 or more),
  the paired differences' mean and spread and the seeds a two-sided t test at
  Holm's first level over the contrasts would need for `power` to detect the
  observed mean and a difference of `margin` (`stats.seeds_needed`)."""
  final = {(r["arm"], r[SEED]): r["selection mIoU"] for r in rows
           if r.get("selection mIoU") is not None}
  out = []
  for name, (weights, _, _) in contrasts.items():
    seeds = sorted(s for s in {s for _, s in final} if all((a, s) in final for a in weights))
    if len(seeds) < 3:
      continue
    d = stats.contrast_values({a: [final[(a, s)] for s in seeds] for a in weights}, weights)
    out.append({"contrast": name, "seeds": len(seeds), "mean d": f"{d.mean():+.4f}",
                "sd d": f"{d.std(ddof=1):.4f}",
                "seeds needed (observed mean)": stats.seeds_needed(
                    d, power=power, family=len(contrasts)),
                f"seeds needed ({margin})": stats.seeds_needed(
                    d - d.mean() + margin, power=power, family=len(contrasts))})
  return out


def summarize(runs, arms, splits=SCORED_SPLITS):
  """{arm: {split: {metric: stats.describe(per-seed values)}}, plus per-seed
  mIoU and the largest plateau gain}."""
  out = {}
  for arm in arms:
    members = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r[SEED])
    out[arm] = {split: {m: stats.describe([r["scores"][split][m] for r in members])
                        for m in METRICS} for split in splits}
    out[arm]["seeds"] = [r[SEED] for r in members]
    out[arm]["plateau_gain_max"] = max(r["plateau_gain"] for r in members)
  return out


def test_scores(runs, arms, metric="mean_iou", split=TEST_SPLIT):
  """{arm: [test score per seed, in seed order]} (seeds paired across arms)."""
  return {arm: [r["scores"][split][metric] for r in
                sorted((r for r in runs if r["arm"] == arm), key=lambda r: r[SEED])]
          for arm in arms}


def cpu_id():
  """family/model/stepping and a hash of the feature flags (/proc/cpuinfo): two
  VMs that both say 'AMD EPYC' can compile and round differently."""
  fields = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    return ""
  flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:8]
  return "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping")) + f" {flags}"


def cpu_model():
  """The CPU's model name (/proc/cpuinfo), or the platform's processor string."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def collapses(runs, arms):
  """{arm: [collapsed run names]} by `stats.collapsed` on each run's final
  selection mIoU (the rule fixed before the runs); the runs stay in the analysis."""
  out = {}
  for arm in arms:
    members = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r[SEED])
    final = [r["curves"].get("eval_mean_iou", [(0, math.nan)])[-1][1] for r in members]
    out[arm] = [members[i]["name"] for i in stats.collapsed(final)]
  return out


def provenance():
  """The commit, the machine and the library versions a result came from."""
  import flax
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except OSError:
    commit = ""
  import jaxlib
  return {"commit": commit or "unknown", "machine": platform.platform(),
          "processor": platform.processor() or platform.machine(), "cpu": cpu_model(),
          "cpu_id": cpu_id(),
          "cpus": os.cpu_count(), "cpus_used": len(os.sched_getaffinity(0)),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__,
          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}


def analyze(runs, arms, contrasts, splits=SCORED_SPLITS):
  """The analysis of scored runs (dicts as `run_arms` returns them, or the
  'runs' of a recorded results.json): per-arm summary, the pre-registered
  contrasts on the first split's mIoU (those whose arms all ran) with their
  leave-one-out robustness and the seeds 80 % power needs, the secondary
  endpoints (BF, Boundary IoU: each its own Holm family), collapsed runs,
  flatness and every pairwise comparison."""
  arms = list(arms)
  contrasts = {k: v for k, v in contrasts.items() if set(v[0]) <= set(arms)}
  scores = test_scores(runs, arms, split=splits[0])
  return {"summary": summarize(runs, arms, splits),
          "contrasts": stats.compare(scores, contrasts),
          "robustness": stats.leave_one_out(scores, contrasts),
          "seeds_needed": {name: stats.seeds_needed(stats.contrast_values(scores, w),
                                                    family=len(contrasts))
                           for name, (w, _, _) in contrasts.items()},
          "collapsed": collapses(runs, arms),
          "secondary": {m: stats.compare(test_scores(runs, arms, m, splits[0]), contrasts)
                        for m in ("bf", "boundary_iou")},
          "flatness": flatness([{"arm": r["arm"], "gain last 20 %": r["plateau_gain"]}
                                for r in runs]),
          "pairwise": stats.compare(scores, stats.pairwise(arms))}


def run_study(config, workdir, arms, seeds, contrasts, log=print, splits=SCORED_SPLITS,
              declared=None, allow_mixed=False, vmap_seeds="auto", published=None,
              read_only=False):
  """Trains and scores every arm x seed, then the tables, contrasts and figures.

  arms: {label: {dotted field: value}}; seeds: the paired seeds;
  contrasts: the pre-registered ones, {name: (weights {arm: w}, 'A', 'B')}
  (`fcnjax.stats.compare`), those whose arms all run; every pair of arms is
  compared as well.
  splits: the scored splits, the contrasts' first; declared: {contrast: date};
  published: {arm: a published figure quoted beside its costs};
  read_only: the tables from the runs as trained (`read_runs`: another commit's, a
  pinned worktree's), training nothing; the results name the runs' commit;
  vmap_seeds: 'auto' | True | False, each arm's seeds as one program (`run_arms`).
  Returns the results dict written to WORKDIR/results.json.
  """
  if len(seeds) < 2:  # seed by seed (one machine per seed): train and score, compare later
    runs = (read_runs(config, workdir, arms, seeds, log, allow_mixed)[0] if read_only else
            run_arms(config, workdir, arms, seeds, log, splits, allow_mixed, vmap_seeds))
    log(f"--seeds={list(seeds)}: {len(runs)} runs trained and scored; no comparison from one "
        "seed: run the study with all its seeds for the tables (trained runs are read back)")
    return {"runs": runs}
  start = time.time()
  contrasts = {k: v for k, v in contrasts.items() if set(v[0]) <= set(arms)}  # arms that ran
  if read_only:  # checked before the costs are timed
    runs, trained_at = read_runs(config, workdir, arms, seeds, log, allow_mixed)
  configs = {a: experiment.with_fields(config, fields) for a, fields in arms.items()}
  costs = model_costs(configs)  # first, while nothing else runs in this process
  for name, cost in costs.items():
    log(f"cost {name}: {cost}")
  if read_only:
    prov = {**trained_at, "reported_at": provenance()["commit"]}
  else:
    runs, prov = run_arms(config, workdir, arms, seeds, log, splits, allow_mixed,
                          vmap_seeds), provenance()
  results = {"protocol": report.PROTOCOL, "provenance": prov,
             "config": json.loads(config.to_json_best_effort()), "arms": arms,
             "seeds": [int(s) for s in seeds], "costs": costs, "runs": runs,
             "declared": {k: v for k, v in (declared or {}).items() if k in contrasts},
             "published": {k: v for k, v in (published or {}).items() if k in arms},
             **analyze(runs, arms, contrasts, splits)}
  results["wall_s"] = round(time.time() - start, 1)
  report.write(workdir, config, results, log=log)
  return results
