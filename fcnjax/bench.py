"""Training-throughput benchmark on synthetic batches.

    python -m fcnjax.bench --models=fcn32s,fcn16s,fcn8s --backbone=tiny --size=128 --json
    python -m fcnjax.bench --models=fcn8s --upsample=learned,bilinear,nearest --drivers=pmap,jit

One line per case: name, train_images_per_s, compile_s, step_ms, peak_rss_mb
(the process's peak resident memory so far; run one case per process for an
exact per-case figure). All cases run side by side in one process, so their
ratios are comparable.
"""
import json
import resource
import time

from absl import app, flags

FLAGS = flags.FLAGS


def model_config(name, upsample, backbone):
  import ml_collections
  if name.startswith("fcn"):
    return ml_collections.ConfigDict(dict(name="fcn", variant=name[3:], backbone=backbone,
                                          upsample=upsample, dropout_rate=0.0))
  return ml_collections.ConfigDict(dict(name=name, backbone=backbone))


def bench_case(name, upsample, driver_name):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from fcnjax import models
  from fcnjax.train import parallel
  from fcnjax.train import state as state_lib

  dtype = jnp.bfloat16 if FLAGS.dtype == "bfloat16" else jnp.float32
  model = models.build_model(model_config(name, upsample, FLAGS.backbone), FLAGS.num_classes,
                             dtype=dtype)
  shape = (FLAGS.batch_size, FLAGS.size, FLAGS.size)
  state = state_lib.create_train_state(model, optax.sgd(1e-3, 0.9), jax.random.key(0),
                                       (1,) + shape[1:] + (3,))
  driver = parallel.make_driver(driver_name, loss_reduction="mean",
                                num_classes=FLAGS.num_classes)
  state = driver.put_state(state)
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=shape + (3,)).astype(np.float32),
           "label": rng.integers(0, FLAGS.num_classes, size=shape).astype(np.int32)}
  start = time.perf_counter()
  state, metrics = driver.train(state, batch, jax.random.key(0))
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, metrics = driver.train(state, batch, jax.random.key(0))
  jax.block_until_ready(metrics)
  elapsed = time.perf_counter() - start
  return dict(name=f"{name}_{upsample}_{driver_name}" if name.startswith("fcn")
              else f"{name}_{driver_name}",
              model=name, upsample=upsample, driver=driver_name, backbone=FLAGS.backbone,
              size=FLAGS.size, batch_size=FLAGS.batch_size, devices=driver.num_devices,
              dtype=FLAGS.dtype, device=jax.devices()[0].device_kind,
              train_images_per_s=FLAGS.batch_size * FLAGS.steps / elapsed,
              step_ms=1e3 * elapsed / FLAGS.steps, compile_s=compile_s,
              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv):
  del argv
  rows = []
  for name in FLAGS.models:
    for upsample in (FLAGS.upsample if name.startswith("fcn") else ["-"]):
      for driver_name in FLAGS.drivers:
        row = bench_case(name, upsample, driver_name)
        rows.append(row)
        if FLAGS.json:
          print(json.dumps(row), flush=True)
  if not FLAGS.json:
    base = rows[0]["train_images_per_s"]
    print(f"{'case':32s} {'img/s':>8s} {'vs first':>8s} {'step ms':>8s} "
          f"{'compile s':>9s} {'peak MB':>8s}")
    for r in rows:
      print(f"{r['name']:32s} {r['train_images_per_s']:8.2f} "
            f"{r['train_images_per_s'] / base:7.2f}x {r['step_ms']:8.1f} "
            f"{r['compile_s']:9.1f} {r['peak_rss_mb']:8.0f}")


def define_flags():
  """The bench's flags (defined when it runs, so importing it defines none)."""
  flags.DEFINE_list("models", ["fcn32s", "fcn16s", "fcn8s"],
                    "fcn32s|fcn16s|fcn8s|segnet|deconvnet")
  flags.DEFINE_list("upsample", ["learned"], "FCN upsampling operators to compare.")
  flags.DEFINE_list("drivers", ["pmap"], "pmap and/or jit.")
  flags.DEFINE_string("backbone", "tiny", "tiny or vgg16.")
  flags.DEFINE_integer("size", 128, "Square input size.")
  flags.DEFINE_integer("batch_size", 8, "Global batch size.")
  flags.DEFINE_integer("num_classes", 21, "Output classes.")
  flags.DEFINE_integer("steps", 10, "Timed steps after the compiled first step.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
  flags.DEFINE_bool("json", False, "Print one JSON line per case.")


def run():
  define_flags()
  from fcnjax import cli
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
