"""Training-throughput benchmark on synthetic batches (the library behind
`python -m fcnjax.commands.bench`), with an optional reference timed side by side.

Every case builds its model, runs one step (compile) and `steps` timed steps
of the full training step (forward, loss, backward, SGD momentum update) on a
fixed random batch: images (N, H, W, 3) normal, labels (N, H, W) uniform.
The drivers of a case and its reference (`Options.reference`: the PyTorch
twin of `benchmarks/torch_bench.py`, outside the package) take turns step by
step, so on a shared machine their ratio is measured under the same load.
Defines no flags and reads no process-wide setting: the entry point hands down
the allocator it set (`Options.malloc`); `run(models, upsamplers, drivers,
opts)` returns the rows.
"""
import dataclasses
import resource
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fcnjax import models as models_lib
from fcnjax.data import pipeline
from fcnjax.train import assemble, losses, parallel
from fcnjax.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class Options:
  backbone: str = "tiny"
  size: int = 128
  batch_size: int = 8
  num_classes: int = 21
  steps: int = 10
  dtype: str = "float32"
  fc_impl: str = "matmul"  # VGGBackbone.fc_impl: 'matmul' or 'xla'
  malloc: str = "system"  # this process's allocator as its entry point set it (reported)
  # (name, upsample, opts) -> (step, info) | None: a case timed beside the
  # drivers, the denominator of their vs_torch (benchmarks/torch_bench.py);
  # step() runs one step, an optional step.close() ends it.
  reference: Optional[Callable] = None


# The step's optimizer: SGD with momentum (the PyTorch twin's takes the same).
LEARNING_RATE, MOMENTUM = 1e-3, 0.9
# The decoder's depth: the upsampling studies' (4 pools, a 4x4 bottleneck at 64x64).
DECODER_DEPTH = 4


def takes_upsample(name):
  """Whether a case's model is timed per --upsample operator (FCNs, the decoder)."""
  return name.startswith("fcn") or name == "decoder"


def model_config(name, upsample, backbone):
  if name.startswith("fcn"):
    return ml_collections.ConfigDict(dict(name="fcn", variant=name[3:], backbone=backbone,
                                          upsample=upsample, dropout_rate=0.0))
  if name == "decoder":
    return ml_collections.ConfigDict(dict(name=name, backbone=backbone, depth=DECODER_DEPTH,
                                          upsample=upsample))
  return ml_collections.ConfigDict(dict(name=name, backbone=backbone))


def build_model(name, upsample, opts):
  """fcnjax model of a case; FCN backbones get opts.fc_impl."""
  dtype = jnp.bfloat16 if opts.dtype == "bfloat16" else jnp.float32
  model = models_lib.build_model(model_config(name, upsample, opts.backbone),
                                 opts.num_classes, dtype=dtype)
  if name.startswith("fcn"):
    model = model.clone(backbone=model.backbone.clone(fc_impl=opts.fc_impl))
  return model


def synthetic_batch(opts):
  rng = np.random.default_rng(0)
  shape = (opts.batch_size, opts.size, opts.size)
  return {"image": rng.normal(size=shape + (3,)).astype(np.float32),
          "label": rng.integers(0, opts.num_classes, size=shape).astype(np.int32)}


def _row(name, opts, elapsed, compile_s, **extra):
  return dict(name=name, backbone=opts.backbone, size=opts.size, batch_size=opts.batch_size,
              dtype=opts.dtype, train_images_per_s=opts.batch_size * opts.steps / elapsed,
              step_ms=1e3 * elapsed / opts.steps, compile_s=compile_s,
              peak_rss_mb=extra.pop("peak_rss_mb", peak_rss_mb()), **extra)


def peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jax_step(name, upsample, driver_name, opts):
  """fcnjax's training step for one (model, upsample, driver): (step, info);
  step() runs one step to completion (the first call compiles)."""
  model = build_model(name, upsample, opts)
  batch = synthetic_batch(opts)
  state = state_lib.create_train_state(model, optax.sgd(LEARNING_RATE, MOMENTUM),
                                       jax.random.key(0), (1,) + batch["image"].shape[1:])
  driver = parallel.make_driver(driver_name, loss_fn=losses.make_loss("ce"),
                                num_classes=opts.num_classes)
  carry = {"state": driver.put_state(state)}

  def step():
    carry["state"], metrics = driver.train(carry["state"], batch, jax.random.key(0))
    jax.block_until_ready(metrics)

  label = (f"{name}_{upsample}_{driver_name}" if takes_upsample(name)
           else f"{name}_{driver_name}")
  return step, dict(name=label, model=name, upsample=upsample, driver=driver_name,
                    devices=driver.num_devices, device=jax.devices()[0].device_kind,
                    fc_impl=opts.fc_impl, malloc=opts.malloc)


def time_interleaved(steps, n):
  """Runs each step once (compile / warm-up), then n rounds that time every
  step once in turn, so steps compared in one case see the same machine load.
  Returns (first-call seconds, total timed seconds), one pair per step."""
  first = []
  for step in steps:
    start = time.perf_counter()
    step()
    first.append(time.perf_counter() - start)
  totals = [0.0] * len(steps)
  for _ in range(n):
    for i, step in enumerate(steps):
      start = time.perf_counter()
      step()
      totals[i] += time.perf_counter() - start
  return list(zip(first, totals))


def bench_case(name, upsample, drivers, opts):
  """Rows for one (model, upsample): each driver, then opts.reference's case
  where it gives one; the driver rows then get vs_torch (their img/s / the
  reference's img/s, the key recorded tables use)."""
  cases = [jax_step(name, upsample, d, opts) for d in drivers]
  reference = opts.reference(name, upsample, opts) if opts.reference else None
  if reference:
    cases.append(reference)
  try:
    times = time_interleaved([step for step, _ in cases], opts.steps)
  finally:
    for step, _ in cases:
      getattr(step, "close", lambda: None)()
  rows = [_row(info.pop("name"), opts, total, first, **info)
          for (_, info), (first, total) in zip(cases, times)]
  if reference:
    for row in rows[:-1]:
      row["vs_torch"] = row["train_images_per_s"] / rows[-1]["train_images_per_s"]
  return rows


def run(models, upsamplers, drivers, opts, emit=None):
  """Benchmarks every (model, upsample) case with each driver and the
  reference side by side; emit(row) is called as each row is done."""
  rows = []
  for name in models:
    for upsample in (upsamplers if takes_upsample(name) else ["-"]):
      for row in bench_case(name, upsample, drivers, opts):
        rows.append(row)
        if emit:
          emit(row)
  return rows


def format_table(rows):
  """The rows as a text table (ratios vs the first row and vs the reference)."""
  base = rows[0]["train_images_per_s"]
  lines = [f"{'case':32s} {'img/s':>8s} {'vs first':>8s} {'vs torch':>8s} {'step ms':>8s} "
           f"{'compile s':>9s} {'peak MB':>8s}"]
  for r in rows:
    vs_torch = f"{r['vs_torch']:7.2f}x" if "vs_torch" in r else f"{'-':>8s}"
    lines.append(f"{r['name']:32s} {r['train_images_per_s']:8.2f} "
                 f"{r['train_images_per_s'] / base:7.2f}x {vs_torch} {r['step_ms']:8.1f} "
                 f"{r['compile_s']:9.1f} {r['peak_rss_mb']:8.0f}")
  return "\n".join(lines)


def pipeline_throughput(data_config, batch_size, threads, workers, steps):
  """img/s of `data.pipeline.train_batches` alone (after a warm-up of
  2 * workers batches, so every worker process runs)."""
  batches = pipeline.train_batches(data_config, batch_size, seed=0, num_threads=threads,
                                   num_workers=workers)
  for _ in range(max(2, 2 * workers)):
    next(batches)
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return batch_size * steps / (time.perf_counter() - start)


def fed_vs_fixed(config, steps):
  """{'fixed', 'fed', 'busy_fraction'}: img/s of a training config's step on
  one batch kept on the device (the step's demand), fed by the pipeline
  (metrics fetched every 50 steps, as the loop does), and their ratio."""
  info = pipeline.get_info(config.data)
  state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
  driver = assemble.make_driver(config, info)
  state = driver.put_state(state)
  batches = pipeline.train_batches(config.data, config.batch_size, seed=0)
  fixed = driver.put_batch(next(batches))
  rates = {}
  for name in ("fixed", "fed"):
    feed = (lambda: next(batches)) if name == "fed" else (lambda: fixed)
    state, m = driver.train(state, feed(), jax.random.key(0))
    jax.block_until_ready(m)
    start, pending = time.perf_counter(), []
    for i in range(steps):
      state, m = driver.train(state, feed(), jax.random.key(0))
      pending.append(m)
      if (i + 1) % 50 == 0:
        jax.device_get(pending)
        pending = []
    jax.device_get(pending)
    rates[name] = config.batch_size * steps / (time.perf_counter() - start)
  return dict(rates, busy_fraction=rates["fed"] / rates["fixed"])


def input_rows(config, steps, settings=((0, 0), (1, 0), (4, 0), (1, 2), (1, 4))):
  """The step's demand and the pipeline's img/s per (threads, workers) for a
  training config: rows for `format_input_table`."""
  demand = fed_vs_fixed(config, steps)
  rows = [dict(name="step (fixed batch)", images_per_s=demand["fixed"]),
          dict(name="step fed by the pipeline", images_per_s=demand["fed"],
               busy_fraction=demand["busy_fraction"])]
  for threads, workers in settings:
    rate = pipeline_throughput(config.data, config.batch_size, threads, workers, steps)
    rows.append(dict(name=f"pipeline threads={threads} workers={workers}",
                     images_per_s=rate, vs_step_demand=rate / demand["fixed"]))
  return rows


def format_input_table(rows):
  lines = [f"{'input':36s} {'img/s':>9s} {'x demand':>9s} {'busy':>6s}"]
  for r in rows:
    ratio = f"{r['vs_step_demand']:8.1f}x" if "vs_step_demand" in r else f"{'-':>9s}"
    busy = f"{r['busy_fraction']:6.2f}" if "busy_fraction" in r else f"{'-':>6s}"
    lines.append(f"{r['name']:36s} {r['images_per_s']:9.1f} {ratio} {busy}")
  return "\n".join(lines)
