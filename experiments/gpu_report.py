"""Accelerator report: training throughput with an MFU estimate, the input
pipeline's own throughput, and how busy the device is when the pipeline feeds it.

    python experiments/gpu_report.py --out=report.json
    python experiments/gpu_report.py --size=64 --batch_size=2 --backbone=tiny  # a CPU dry run

1. The bench case (FCN-8s, VGG16, 'same', jit driver; dtype, size, batch from
   the flags) on a fixed batch: img/s, and MFU = XLA's cost-analysis FLOPs of
   the step (HLO before backend passes) / step time / --peak_tflops.
2. The input pipeline of a training config alone (grain, per thread / worker
   count): img/s, against the step's demand (its img/s on a fixed batch).
3. Busy fraction: the same config's train step fed by the pipeline (metrics
   fetched every 50 steps as the loop does) / fed a fixed batch on the device.
"""
import importlib
import json
import time

import jax
import optax
from absl import app, flags

from fcnjax.runtime import cli
from fcnjax.studies import benchmark
from fcnjax.train import losses, parallel
from fcnjax.train import state as state_lib

FLAGS = flags.FLAGS


def bench_with_flops(opts, steps):
  """The bench row of FCN-8s under `opts` (benchmark.Options), with FLOPs per
  step, TFLOP/s and MFU."""
  model = benchmark.build_model("fcn8s", "learned", opts)
  batch = benchmark.synthetic_batch(opts)
  state = state_lib.create_train_state(model, optax.sgd(1e-3, 0.9), jax.random.key(0),
                                       (1,) + batch["image"].shape[1:])
  driver = parallel.make_driver("jit", loss_fn=losses.make_loss("ce"),
                                num_classes=opts.num_classes)
  state, device_batch = driver.put_state(state), driver.put_batch(batch)
  t = time.perf_counter()
  lowered = driver.train_step.lower(state, device_batch, jax.random.key(0))
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t
  # FLOPs of the HLO before backend passes: on GPU the compiled module's
  # convolutions are library calls that its cost analysis counts as 0.
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = FLAGS.flops_per_step or (cost or {}).get("flops")  # some backends give none
  state, metrics = compiled(state, device_batch, jax.random.key(0))
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, device_batch, jax.random.key(0))
  jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - t) / steps
  return dict(dtype=opts.dtype, size=opts.size, batch_size=opts.batch_size,
              backbone=opts.backbone, compile_s=compile_s, step_ms=1e3 * step_s,
              train_images_per_s=opts.batch_size / step_s, flops_per_step=flops,
              tflops_per_s=flops and flops / step_s / 1e12,
              mfu=flops and flops / step_s / (FLAGS.peak_tflops * 1e12),
              device=jax.devices()[0].device_kind)


def main(argv):
  del argv
  report = dict(jax=jax.__version__, devices=[d.device_kind for d in jax.devices()])
  print(report, flush=True)
  for dtype in FLAGS.dtypes:
    opts = benchmark.Options(backbone=FLAGS.backbone, size=FLAGS.size, dtype=dtype,
                             batch_size=FLAGS.batch_size, num_classes=21)
    row = bench_with_flops(opts, FLAGS.steps)
    report[f"bench_{dtype}"] = row
    print(json.dumps(row), flush=True)
  config = importlib.import_module(f"fcnjax.configs.{FLAGS.train_config}").get_config()
  if FLAGS.data_dir:
    config.data.data_dir = FLAGS.data_dir
  fed = benchmark.fed_vs_fixed(config, FLAGS.fed_steps)
  report["fed_vs_fixed"] = fed
  print(json.dumps(fed), flush=True)
  report["pipeline"] = []
  for threads, workers in ((0, 0), (4, 0), (8, 0), (1, 4), (1, 8)):
    rate = benchmark.pipeline_throughput(config.data, config.batch_size, threads, workers,
                               FLAGS.pipeline_steps)
    entry = dict(threads=threads, workers=workers, images_per_s=rate,
                 vs_step_demand=rate / fed["fixed"])
    report["pipeline"].append(entry)
    print(json.dumps(entry), flush=True)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  flags.DEFINE_list("dtypes", ["bfloat16", "float32"], "Compute dtypes of the bench case.")
  flags.DEFINE_string("backbone", "vgg16", "Backbone of the bench case.")
  flags.DEFINE_integer("size", 512, "Square input size of the bench case.")
  flags.DEFINE_integer("batch_size", 16, "Batch size of the bench case.")
  flags.DEFINE_integer("steps", 20, "Timed steps of the bench case.")
  flags.DEFINE_float("peak_tflops", 989.0, "Peak dense TFLOP/s of the device for the MFU "
                     "(H100 SXM bf16: 989).")
  flags.DEFINE_float("flops_per_step", None, "FLOPs of one step, where the backend's "
                     "lowered cost analysis gives none (count them on the CPU: same HLO).")
  flags.DEFINE_string("train_config", "fcn8s_shapes", "Packaged training config.")
  flags.DEFINE_integer("fed_steps", 200, "Steps of the fed / fixed comparison.")
  flags.DEFINE_integer("pipeline_steps", 200, "Batches timed per pipeline setting.")
  flags.DEFINE_string("data_dir", None, "tfds data_dir of the training config's dataset.")
  flags.DEFINE_string("out", None, "Write the report as JSON here.")
  cli.configure_xla()
  app.run(main)
