"""Training-throughput benchmark on synthetic batches.

    fcnjax-bench --models=fcn8s --backbone=vgg16 --size=224 --batch_size=2 --drivers=jit
    fcnjax-bench --models=fcn32s,fcn16s,fcn8s --backbone=tiny --size=128 --json
    fcnjax-bench --models=fcn8s --upsample=learned,bilinear,nearest --drivers=pmap,jit
    fcnjax-bench --models= --input_config=fcn8s_shapes  # input pipeline vs step

One line per case: name, train_images_per_s, ratio vs the first case,
step_ms, compile_s, peak_rss_mb (the process's peak resident memory so far).
All cases run side by side in one run, taking turns step by step, so their
ratios are comparable. The PyTorch comparison (a vs torch column) is
`python benchmarks/torch_bench.py` with the same flags, outside the package.
The logic lives in `fcnjax.studies.benchmark`; the XLA flags and allocator
settings the project sets are in `fcnjax.runtime.cli.configure_xla` and
`configure_allocator` (docs/benchmarks.md).
"""
import importlib
import json

from absl import flags

from fcnjax.runtime import cli
from fcnjax.studies import benchmark

FLAGS = flags.FLAGS


def main(argv, reference=None):
  """Runs the cases the flags name; reference: `benchmark.Options.reference`."""
  del argv
  opts = benchmark.Options(backbone=FLAGS.backbone, size=FLAGS.size, batch_size=FLAGS.batch_size,
                           num_classes=FLAGS.num_classes, steps=FLAGS.steps, dtype=FLAGS.dtype,
                           fc_impl=FLAGS.fc_impl,
                           malloc="tuned" if cli.allocator_tuned else "system",
                           reference=reference)
  emit = (lambda row: print(json.dumps(row), flush=True)) if FLAGS.json else None
  if FLAGS.input_config:
    config = importlib.import_module(f"fcnjax.configs.{FLAGS.input_config}").get_config()
    rows = benchmark.input_rows(config, FLAGS.input_steps)
    for row in rows if emit else ():
      emit(row)
    if not FLAGS.json:
      print(benchmark.format_input_table(rows))
  if FLAGS.models:
    rows = benchmark.run(FLAGS.models, FLAGS.upsample, FLAGS.drivers, opts, emit=emit)
    if not FLAGS.json:
      print(benchmark.format_table(rows))


def define_flags():
  """The bench's flags (defined when it runs, so importing it defines none)."""
  flags.DEFINE_list("models", ["fcn32s", "fcn16s", "fcn8s"],
                    "fcn32s|fcn16s|fcn8s|segnet|deconvnet|decoder")
  flags.DEFINE_list("upsample", ["learned"], "Upsampling operators to compare (FCNs, decoder).")
  flags.DEFINE_list("drivers", ["pmap"], "pmap and/or jit.")
  flags.DEFINE_string("backbone", "tiny", "tiny or vgg16.")
  flags.DEFINE_integer("size", 128, "Square input size.")
  flags.DEFINE_integer("batch_size", 8, "Global batch size.")
  flags.DEFINE_integer("num_classes", 21, "Output classes.")
  flags.DEFINE_integer("steps", 10, "Timed steps after the compiled first step.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
  flags.DEFINE_enum("fc_impl", "matmul", ["matmul", "xla"], "fc6 / fc7 implementation.")
  flags.DEFINE_bool("json", False, "Print one JSON line per case.")
  flags.DEFINE_string("input_config", None, "A packaged training config (fcn8s_shapes): "
                      "also time its input pipeline per thread / worker count against "
                      "its train step's demand (--models= to skip the model cases).")
  flags.DEFINE_integer("input_steps", 100, "Batches / steps timed per input setting.")


def run():
  define_flags()
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
