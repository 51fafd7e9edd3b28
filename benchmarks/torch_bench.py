"""fcnjax's training step against the PyTorch twin (`torch_reference`), side by side.

    python benchmarks/torch_bench.py --models=fcn8s --backbone=vgg16 --size=224 --batch_size=2 --drivers=jit
    python benchmarks/torch_bench.py --models=fcn8s --backbone=vgg16 --size=224 --drivers=jit --torch_malloc=tuned
    python benchmarks/torch_bench.py --models=decoder --backbone=small --size=64 --batch_size=16 \
        --upsample=nearest,bilinear --drivers=jit

The flags of `fcnjax-bench`, plus --torch_malloc; the table gains a
torch row per covered case and a vs torch column (fcnjax img/s / PyTorch
img/s). The twins cover, in float32, FCNs with learned upsampling on the
plain VGG backbones (vgg16, tiny; NCHW) and the study decoder (depth
`benchmark.DECODER_DEPTH`) with nearest or bilinear x2 steps on the
BatchNorm VGGs (small, vgg16_bn; channels_last). PyTorch runs in a process of its
own, started as a PyTorch user would run it (glibc's default allocator;
--torch_malloc=tuned gives it fcnjax's `cli.configure_allocator` settings):
in one process the two frameworks' heap states interfere (measured: fcnjax's
VGG16 batch-2 step 2320 ms when alternating, 1918 ms alone). Needs torch (not
an fcnjax dependency); lives outside the package, with the tests that compare
the twin to fcnjax.
"""
import dataclasses
import functools
import multiprocessing
import os
import sys

import numpy as np
from absl import flags

from fcnjax.commands import bench
from fcnjax.models.vgg import VGG_SIZES, VGGBackbone
from fcnjax.runtime import cli
from fcnjax.studies import benchmark

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference  # noqa: E402

FLAGS = flags.FLAGS


def has_reference(name, upsample, opts):
  """A twin covers the case: FCNs with learned upsampling on the plain
  (BatchNorm-free) VGG backbones, the decoder with the nearest or bilinear
  operator on the BatchNorm VGGs; in float32, where torch is installed."""
  if not (torch_reference.torch_available() and opts.dtype == "float32"
          and opts.backbone in VGG_SIZES):
    return False
  batch_norm = bool(VGG_SIZES[opts.backbone].get("batch_norm"))
  if name == "decoder":
    return upsample in torch_reference.DECODER_UPSAMPLERS and batch_norm
  return name.startswith("fcn") and upsample == "learned" and not batch_norm


def backbone_sizes(backbone):
  """stage_sizes, widths, fc_width, fc6_kernel of an fcnjax VGG backbone name."""
  sizes = VGG_SIZES[backbone]
  return dict(stage_sizes=sizes["stage_sizes"], widths=sizes["widths"],
              fc_width=sizes["fc_width"], fc6_kernel=VGGBackbone.fc6_kernel)


def decoder_sizes(backbone):
  """widths, stage_sizes, depth of the bench's decoder on an fcnjax VGG backbone name."""
  sizes = VGG_SIZES[backbone]
  return dict(widths=sizes["widths"], stage_sizes=sizes["stage_sizes"],
              depth=benchmark.DECODER_DEPTH)


def _worker(conn, name, upsample, options, malloc):
  """The PyTorch step in its own process: sends its info, then runs one step
  per 'step' message (answering its peak memory, or the error) until 'stop'.
  options: the Options fields but `reference`, as a dict."""
  tuned = malloc == "tuned" and cli.configure_allocator({"FCNJAX_MALLOC": "tuned"})
  import torch  # after the allocator is set
  opts = benchmark.Options(**options)
  batch = benchmark.synthetic_batch(opts)
  images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2)  # NHWC data: channels_last
  if name == "decoder":
    model = torch_reference.build_decoder(opts.num_classes, upsample,
                                          **decoder_sizes(opts.backbone))
    model = model.to(memory_format=torch.channels_last)
    label = f"torch_{name}_{upsample}"
  else:
    model = torch_reference.build(opts.num_classes, name[3:], **backbone_sizes(opts.backbone))
    images = images.contiguous()  # NCHW
    label = f"torch_{name}"
  train = torch_reference.train_step_fn(model, lr=benchmark.LEARNING_RATE,
                                        momentum=benchmark.MOMENTUM)
  labels = torch.from_numpy(batch["label"].astype(np.int64))
  conn.send(dict(name=label, model=name, upsample=upsample, driver="torch",
                 device="cpu", torch_version=torch.__version__,
                 torch_threads=torch.get_num_threads(), malloc="tuned" if tuned else "system"))
  while conn.recv() == "step":
    try:
      train(images, labels)
      conn.send(benchmark.peak_rss_mb())
    except Exception as e:  # reported in the parent
      conn.send(e)


def torch_step(name, upsample, opts, malloc="system"):
  """The twin's training step on the same batch, run in a spawned child
  process: (step, info); step.close() ends the process."""
  options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
             if f.name != "reference"}  # what the spawned process can unpickle
  context = multiprocessing.get_context("spawn")
  parent, child = context.Pipe()
  process = context.Process(target=_worker, args=(child, name, upsample, options, malloc),
                            daemon=True)
  process.start()
  info = parent.recv()

  def step():
    parent.send("step")
    reply = parent.recv()
    if isinstance(reply, Exception):
      raise RuntimeError(f"PyTorch reference step failed: {reply!r}")
    info["peak_rss_mb"] = reply  # of the PyTorch process

  def close():
    parent.send("stop")
    process.join(timeout=30)

  step.close = close
  return step, info


def reference(name, upsample, opts, malloc="system"):
  """`benchmark.Options.reference`: the twin's (step, info) where it covers the
  case, else None; malloc: its process's allocator, 'system' or 'tuned'."""
  return torch_step(name, upsample, opts, malloc) if has_reference(name, upsample, opts) else None


def main(argv):
  if not torch_reference.torch_available():
    raise SystemExit("error: benchmarks/torch_bench.py needs PyTorch: pip install torch==2.13.0")
  bench.main(argv, reference=functools.partial(reference, malloc=FLAGS.torch_malloc))


def run():
  bench.define_flags()
  flags.DEFINE_enum("torch_malloc", "system", ["system", "tuned"],
                    "The PyTorch process's allocator: glibc's default (as PyTorch users run "
                    "it) or fcnjax's cli.configure_allocator settings.")
  for flag in FLAGS.flags_by_module_dict()[bench.__name__]:  # --help lists them as this script's
    FLAGS.register_flag_by_module(__name__, flag)
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
