"""Seeds as one program: S seeds of one config trained by one jitted step.

`train_seeds(configs, workdirs)` trains configs that differ only in `seed`
(one arm of a study) together: params, optimizer state, BatchNorm
statistics, step rngs and each seed's own batches (`pipeline.train_batches`
with that seed's data order, stacked) carry a leading seed axis, and the
step is `jax.vmap` of `step.train_step`, the one step body both drivers run
(evaluation: `jax.vmap` of `step.eval_step`, the eval split's batches shared
by the seeds). Each seed's workdir gets what `loop.train_and_evaluate` writes
for it: config.json, checkpoints at the same steps with the same scores and
description, history.json, TensorBoard events, curves.png; resuming works
when every seed's newest checkpoint is the same step (otherwise
`UnequalSteps`: train them one by one), and a stop signal saves every seed.

Devices (`SeedsDriver`): a 2-D mesh ('seed', 'batch') under `shard_map`.
The seed axis is split over gcd(S, devices) of them and each seed's batch
over the rest (the 'batch' axis of step.py's collectives, as in `JitDriver`);
inside a device the local seeds are vmapped. One device: both axes have
size 1 and the collectives are identities. Single-process only. A seed's
numbers equal a sequential run's on `batch_devices` devices up to float
summation order (vmapped convolutions compile to grouped ones; BN means are
summed over another split of the batch); a model with dropout draws its
masks per device, so they also follow the batch split.

config.parallel is not read: the seeds always run under jit + shard_map.

On this CPU vmapping 4 seeds of the study decoder measured 0.56x the
sequential throughput: `studies.study.run_arms(vmap_seeds='auto')` uses it
only on an accelerator. `throughput(config, S)` measures it (S = 0: the
config's own driver, one run), e.g. the study decoder at S = 0, 1, 4, 16, 32:
    python -c "from fcnjax.train import seeds; from fcnjax.studies import upsampling;
    print([seeds.throughput(upsampling.get_config(), s) for s in (0, 1, 4, 16, 32)])"
"""
import contextlib
import functools
import math
import os
import time

import jax
import numpy as np
from absl import logging
from fcnjax.train import tensorboard  # before clu: TensorFlow-free event files
from clu import parameter_overview, periodic_actions  # noqa: I100
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fcnjax import metrics as seg_metrics
from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.train import assemble, checkpoint, loop, preemption, resume
from fcnjax.train import step as step_lib
from fcnjax.train.history import load_history, save_history
from fcnjax.train.parallel import AXIS

SEED_AXIS = "seed"


class UnequalSteps(ValueError):
  """The seeds' workdirs resume from different steps: one program cannot train them."""


def _divisors(n):
  return [d for d in range(n, 0, -1) if n % d == 0]


def mesh_shape(num_seeds, num_devices, batch_size, eval_batch_size):
  """(seed_devices, batch_devices): seeds split over gcd(S, devices) devices,
  each seed's batch over the largest count of the rest that divides both
  batch sizes."""
  seed_devices = math.gcd(num_seeds, num_devices)
  batch_devices = next(d for d in _divisors(num_devices // seed_devices)
                       if batch_size % d == 0 and eval_batch_size % d == 0)
  return seed_devices, batch_devices


class SeedsDriver:
  """`jax.jit` of `shard_map` over a ('seed', 'batch') mesh of `vmap`ped step bodies.

  States and rngs carry a leading seed axis (sharded over 'seed'); train
  batches are (S, B, ...) (seed axis over 'seed', batch over 'batch'); eval
  batches are (B, ...) shared by every seed. Outputs carry the seed axis.
  """

  def __init__(self, loss_fn, num_classes, num_seeds, batch_size, eval_batch_size,
               boundary_width=2, devices=None):
    if jax.process_count() > 1:
      raise ValueError("vmapped seeds run in a single process; train the seeds one by one")
    devices = list(devices or jax.devices())
    self.num_seeds = num_seeds
    self.seed_devices, self.batch_devices = mesh_shape(num_seeds, len(devices), batch_size,
                                                       eval_batch_size)
    used = np.array(devices[:self.seed_devices * self.batch_devices])
    self.mesh = jax.sharding.Mesh(used.reshape(self.seed_devices, self.batch_devices),
                                  (SEED_AXIS, AXIS))
    self.per_seed = NamedSharding(self.mesh, P(SEED_AXIS))
    self.train_batch = NamedSharding(self.mesh, P(SEED_AXIS, AXIS))
    self.eval_batch = NamedSharding(self.mesh, P(AXIS))
    smap = functools.partial(jax.shard_map, mesh=self.mesh)
    train = jax.vmap(functools.partial(step_lib.train_step, axis_name=AXIS, loss_fn=loss_fn))
    self.train_step = jax.jit(smap(train, in_specs=(P(SEED_AXIS), P(SEED_AXIS, AXIS),
                                                    P(SEED_AXIS)),
                                   out_specs=(P(SEED_AXIS), P(SEED_AXIS))),
                              donate_argnums=(0,))
    evaluate = jax.vmap(functools.partial(step_lib.eval_step, axis_name=AXIS,
                                          num_classes=num_classes,
                                          boundary_width=boundary_width), in_axes=(0, None))
    self.eval_step = jax.jit(smap(evaluate, in_specs=(P(SEED_AXIS), P(AXIS)),
                                  out_specs=P(SEED_AXIS)))

  @property
  def num_devices(self):
    return self.seed_devices * self.batch_devices

  def put_state(self, states):
    """A list of S host states -> one state with a leading seed axis, on the mesh."""
    return jax.device_put(stack(states), self.per_seed)

  def put_rngs(self, rngs):
    return jax.device_put(jax.numpy.stack(rngs), self.per_seed)

  def train(self, state, batches, rngs):
    """batches: S host batches (one per seed, in seed order)."""
    batch = jax.tree.map(lambda *xs: np.stack(xs), *batches)
    return self.train_step(state, jax.device_put(batch, self.train_batch), rngs)

  def evaluate(self, state, batch):
    return self.eval_step(state, jax.device_put(batch, self.eval_batch))

  def to_host(self, state):
    """The S host states (seed order) of a stacked device state."""
    return unstack(jax.device_get(state), self.num_seeds)


def stack(states):
  """S pytrees of one structure -> one with a leading seed axis. Leaves only:
  each TrainState holds its own optax closures, equal in all but identity."""
  leaves = [jax.tree.leaves(s) for s in states]
  treedef = jax.tree.structure(states[0])
  return jax.tree.unflatten(treedef, [np.stack([np.asarray(x) for x in xs])
                                      for xs in zip(*leaves)])


def unstack(tree, num_seeds):
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(num_seeds)]


def check_same_but_seed(configs):
  """ValueError unless the configs differ in `seed` only (and each seed once)."""
  seeds = [c.seed for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"vmapped seeds: seeds {seeds} repeat")
  base = dict(configs[0].to_dict(), seed=None)
  for c in configs[1:]:
    if dict(c.to_dict(), seed=None) != base:
      raise ValueError(f"vmapped seeds: config of seed {c.seed} differs from seed "
                       f"{configs[0].seed}'s in more than the seed")


def _num_workers(data_config, num_seeds):
  """Input worker processes per seed: the config's, or the default shared by the seeds."""
  workers = data_config.get("num_workers")
  return pipeline.default_num_workers() // num_seeds if workers is None else workers


def evaluate(driver, state, config, info, progress=True):
  """Per-seed scores on the validation split, as `loop.evaluate` forms them."""
  from tqdm import tqdm
  n = info.num_eval
  if config.data.get("num_eval"):
    n = min(n, config.data.num_eval)
  total = {}
  batches = pipeline.eval_batches(config.data, config.eval_batch_size)
  for batch in tqdm(batches, total=math.ceil(n / config.eval_batch_size), desc="eval",
                    disable=not progress, leave=False):
    out = jax.device_get(driver.evaluate(state, batch))
    total = out if not total else jax.tree.map(np.add, total, out)
  return [seg_metrics.scores(jax.tree.map(lambda t, s=s: t[s], total))
          for s in range(driver.num_seeds)]


def train_seeds(runs, workdirs):
  """Trains `runs` (configs or `assemble.Prepared`, equal but for `seed`) as one
  program, each into its workdir.

  Returns the final scores per seed (what `loop.train_and_evaluate` returns).
  Raises `UnequalSteps` (before any step) when the workdirs resume from
  different steps, FloatingPointError naming the seed at a non-finite step,
  and `preemption.Stopped` after saving every seed at the step a stop
  signal ended the run.
  """
  if len(runs) != len(workdirs) or not runs:
    raise ValueError("train_seeds: one workdir per config, at least one")
  configs = [assemble.config_of(r) for r in runs]
  check_same_but_seed(configs)
  config, info, model = assemble.prepare(runs[0])  # the others differ in the seed only
  stop = preemption.stop_request(config)
  pipeline.check_splits(config.data)  # every data file read once before step 1 (cached)
  for w in workdirs:
    os.makedirs(w, exist_ok=True)
  states, rngs = [], []
  for c in configs:  # as loop.train_and_evaluate: init and dropout keys from the seed
    init_rng, dropout_rng = jax.random.split(jax.random.key(c.seed))
    state, schedule = assemble.create_state(c, model, init_rng)
    states.append(state)
    rngs.append(dropout_rng)
  parameter_overview.log_parameter_overview(states[0].params)
  with stop, contextlib.ExitStack() as closing:
    ckpts = []
    for c, w in zip(configs, workdirs):
      ckpts.append(checkpoint.Checkpoints(
          w, keep=c.keep_checkpoints, description=checkpoint.describe(c, info),
          timeout_s=c.get("checkpoint_timeout_s", checkpoint.DEFAULT_TIMEOUT_S)))
      closing.callback(ckpts[-1].close)
    resumed = [loop._resume(c, w, k, s) for c, w, k, s in zip(configs, workdirs, ckpts, states)]
    steps = {w: int(s.step) for w, (s, _) in zip(workdirs, resumed)}
    if len(set(steps.values())) > 1:
      raise UnequalSteps(f"the seeds resume from different steps ({steps}): train them "
                         "one by one")
    writers = []
    for w in workdirs:
      writers.append(tensorboard.create_writer(w, purge_step=int(resumed[0][0].step) + 1))
      closing.callback(writers[-1].close)
    scores = _train(configs, workdirs, info, [s for s, _ in resumed], rngs, schedule, ckpts,
                    writers, stop, [list(win) for _, win in resumed])
  if stop.requested:
    raise preemption.Stopped(stop.signal_name, config.num_train_steps, ckpts[0].directory,
                             finished=True)
  return scores


def _stop(stop, step, driver, state, ckpts, windows, workdirs, histories):
  """Saves every seed at `step` (unless saved) with its open window; raises Stopped."""
  for ckpt, host, window, w, history in zip(ckpts, driver.to_host(state), windows, workdirs,
                                            histories):
    if ckpt.latest_step() != step:
      ckpt.save(step, host, window=resume.window_to_json(window))
    save_history(w, history)
  logging.info("Saved step %d of every seed: %s", step, ", ".join(workdirs))
  raise preemption.Stopped(stop.signal_name, step, ckpts[0].directory)


def _train(configs, workdirs, info, states, rngs, schedule, ckpts, writers, stop, windows):
  """`loop._train` for S seeds: the same log, eval and save steps, each seed's
  metrics, scores, checkpoints and history in its own workdir."""
  config, num = configs[0], len(configs)
  start_step = int(states[0].step)
  if start_step == config.num_train_steps:
    for w, ckpt in zip(workdirs, ckpts):
      print(resume.saved_scores_line(w, start_step, ckpt.metrics(start_step)))
  driver = SeedsDriver(assemble.make_loss(config, assemble.class_weights(config, info)),
                       info.num_classes, num, config.batch_size, config.eval_batch_size,
                       config.boundary_width,
                       jax.devices()[:config.num_devices] if config.get("num_devices") else None)
  workers = _num_workers(config.data, num)
  batches = [pipeline.train_batches(c.data, c.batch_size, seed=c.seed, start_step=start_step,
                                    num_workers=workers) for c in configs]
  logging.info("Training %s, seeds %s as one program, from step %d to %d on %d devices "
               "(seeds over %d, each batch over %d)", config.model.name,
               [c.seed for c in configs], start_step, config.num_train_steps,
               driver.num_devices, driver.seed_devices, driver.batch_devices)
  state, rngs = driver.put_state(states), driver.put_rngs(rngs)
  reports = [periodic_actions.ReportProgress(num_train_steps=config.num_train_steps, writer=w)
             for w in writers]
  histories = [load_history(w, start_step) for w in workdirs]
  scores = [None] * num
  pending, timed, t0 = [], 0, time.time()
  if start_step < config.num_train_steps and stop.should_stop_at_start(start_step):
    _stop(stop, start_step, driver, state, ckpts, windows, workdirs, histories)
  for step in range(start_step + 1, config.num_train_steps + 1):
    state, metrics = driver.train(state, [next(b) for b in batches], rngs)
    pending.append((step, metrics))
    for report in reports:
      report(step)
    timed += 1
    evaluated, saved, logged = loop.step_events(config, step)
    if logged or step == start_step + 1:
      _fetch(pending, ckpts, windows)
      pending = []
    if logged:
      images_per_s = config.batch_size * timed / max(time.time() - t0, 1e-9)  # per seed
      for s in range(num):
        summary = loop._train_summary(windows[s], float(schedule(step - 1)), images_per_s)
        writers[s].write_scalars(step, summary)
        histories[s].setdefault("train_loss", []).append((step, summary["train_loss"]))
        windows[s] = []
      timed, t0 = 0, time.time()
    if evaluated:
      with contextlib.ExitStack() as timing:
        for report in reports:
          timing.enter_context(report.timed("eval"))
        scores = evaluate(driver, state, config, info)
      for s in range(num):
        loop._record_eval(step, scores[s], writers[s], histories[s], workdirs[s])
    if saved:
      for s, host in enumerate(driver.to_host(state)):
        ckpts[s].save(step, host, scores[s] if evaluated else None)
    if stop.should_stop(step) and step < config.num_train_steps:
      _fetch(pending, ckpts, windows)
      _stop(stop, step, driver, state, ckpts, windows, workdirs, histories)
    if step == start_step + 1 or evaluated:
      timed, t0 = 0, time.time()
  for w, history in zip(workdirs, histories):
    save_history(w, history)
    if history:
      viz.plot_curves(os.path.join(w, "curves.png"), history)
  return scores


def throughput(config, num_seeds, steps=20, repeats=3):
  """Training throughput of `num_seeds` seeds of `config` as one program on
  fixed random batches (num_seeds=0: the config's own driver, one run): the
  best of `repeats` blocks of `steps` after a first, compiling step.
  -> {'seeds', 'images_per_s' (all seeds together), 'step_ms', 'compile_s'}."""
  info = pipeline.get_info(config.data)
  model = assemble.build_model(config, info)
  states = [assemble.create_state(config, model, jax.random.key(s))[0]
            for s in range(max(num_seeds, 1))]
  rng, size, n = np.random.default_rng(0), config.data.crop_size, config.batch_size
  batch = {"image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
           "label": rng.integers(0, info.num_classes, (n, size, size), dtype=np.int32)}
  loss = assemble.make_loss(config)
  if num_seeds:
    driver = SeedsDriver(loss, info.num_classes, num_seeds, n, config.eval_batch_size,
                         config.boundary_width)
    state, key = driver.put_state(states), driver.put_rngs(
        [jax.random.key(s) for s in range(num_seeds)])
    batch = [batch] * num_seeds
  else:
    driver = assemble.make_driver(config, info)
    state, key = driver.put_state(states[0]), jax.random.key(0)
  start = time.perf_counter()
  state, out = driver.train(state, batch, key)
  jax.block_until_ready(out)
  compile_s, best = time.perf_counter() - start, float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, out = driver.train(state, batch, key)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / steps)
  return {"seeds": num_seeds, "images_per_s": max(num_seeds, 1) * n / best,
          "step_ms": best * 1e3, "compile_s": compile_s}


def _fetch(pending, ckpts, windows):
  """Appends each seed's host metrics of the pending steps to its window;
  `loop._fetch` stops at a seed's first non-finite step, naming its workdir."""
  values = jax.device_get([m for _, m in pending])
  for s, ckpt in enumerate(ckpts):
    windows[s] += loop._fetch([(step, jax.tree.map(lambda x: x[s], m))
                               for (step, _), m in zip(pending, values)], ckpt)
