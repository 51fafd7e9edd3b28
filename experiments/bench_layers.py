"""Per-layer timing of a network's convolutions by implementation.

    python experiments/bench_layers.py [--batch_size=2] [--layers=fc6,conv1_2] [--json]
    python experiments/bench_layers.py --net=decoder --batch_size=16 --impls=xla,torch

--net: fcn8s (VGG16's convolutions, FCN-8s at 224x224) or decoder (the
upsampling studies' decoder: the small BN VGG, depth 4, at 64x64; PyTorch
runs it channels_last, as its twin in benchmarks/torch_reference.py).

For each layer and implementation: forward, and forward + backward (gradients
w.r.t. input and kernel, as in training), best of `--repeats`, jitted, on one
process; fc6 / fc7: lax conv vs `ops.fc.conv_as_matmul`; the 3x3 convs: lax
conv vs `benchmarks/winograd.py`; `--impls=xla,matmul,torch` picks others
('torch': PyTorch's conv2d, for scale). Sets the project's XLA flags
(cli.configure_xla) like the entry points; run with
XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution
to time XLA's YNNPACK convolutions instead.
"""
import argparse
import json
import os
import sys
import time

from fcnjax.runtime import cli

cli.configure_xla()  # before JAX starts (glibc's allocator left at its defaults)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from fcnjax import viz  # noqa: E402
from fcnjax.ops import fc  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))  # benchmark-only code, outside the package
import winograd  # noqa: E402

# name: (map size, Cin, Cout, kernel) of the FCN-8s 'same' geometry at 224x224.
LAYERS = {"conv1_2": (224, 64, 64, 3), "conv2_2": (112, 128, 128, 3),
          "conv3_3": (56, 256, 256, 3), "conv4_3": (28, 512, 512, 3),
          "conv5_3": (14, 512, 512, 3), "fc6": (7, 512, 4096, 7), "fc7": (7, 4096, 4096, 1)}
# The study decoder (backbone 'small', depth 4) at 64x64: the encoder's convs,
# each decoder stage's conv after its x2 step, the 1x1 score.
DECODER_LAYERS = {
    "conv1_1": (64, 3, 16, 3), "conv1_2": (64, 16, 16, 3), "conv2_1": (32, 16, 32, 3),
    "conv2_2": (32, 32, 32, 3), "conv3_1": (16, 32, 64, 3), "conv3_2": (16, 64, 64, 3),
    "conv4_1": (8, 64, 96, 3), "conv4_2": (8, 96, 96, 3), "dec4": (8, 96, 64, 3),
    "dec3": (16, 64, 32, 3), "dec2": (32, 32, 16, 3), "dec1": (64, 16, 16, 3),
    "score": (64, 16, 7, 1)}
NETS = {"fcn8s": LAYERS, "decoder": DECODER_LAYERS}
IMPLS = {"xla": lax.conv_general_dilated, "matmul": fc.conv_as_matmul,
         "winograd": winograd.conv_general_dilated}


def time_fn(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return 1e3 * best


def bench_layer(name, impl, batch, repeats, layers=LAYERS):
  size, cin, cout, k = layers[name]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
  conv = lambda a, b: IMPLS[impl](a, b, (1, 1), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fwd = jax.jit(conv)
  train = jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b) * 1e-3), (0, 1)))
  return dict(layer=name, impl=impl, input=f"{batch}x{size}x{size}x{cin}", cout=cout, kernel=k,
              fwd_ms=time_fn(fwd, x, kernel, repeats=repeats),
              fwd_bwd_ms=time_fn(train, x, kernel, repeats=repeats))


def bench_torch_layer(name, batch, repeats, layers=LAYERS, channels_last=False):
  """The same layer as torch.nn.functional.conv2d (oneDNN; NCHW, or
  channels_last), for scale."""
  import torch
  size, cin, cout, k = layers[name]
  rng = np.random.default_rng(0)
  x = torch.tensor(rng.normal(size=(batch, cin, size, size)), dtype=torch.float32,
                   requires_grad=True)
  kernel = torch.tensor(rng.normal(size=(cout, cin, k, k)) / np.sqrt(k * k * cin),
                        dtype=torch.float32, requires_grad=True)
  if channels_last:
    x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    kernel = kernel.detach().to(memory_format=torch.channels_last).requires_grad_()
  conv = lambda: torch.nn.functional.conv2d(x, kernel, padding=k // 2)

  def train():
    x.grad = kernel.grad = None
    (conv() * 1e-3).sum().backward()

  def best(fn):
    fn()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    return 1e3 * min(times)

  with torch.no_grad():
    fwd_ms = best(conv)
  return dict(layer=name, impl="torch", input=f"{batch}x{size}x{size}x{cin}", cout=cout,
              kernel=k, fwd_ms=fwd_ms, fwd_bwd_ms=best(train))


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--net", default="fcn8s", choices=sorted(NETS))
  parser.add_argument("--batch_size", type=int, default=2)
  parser.add_argument("--layers", default=None, help="default: all of --net's")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--impls", default=None,
                      help="comma-separated implementations to compare (default: xla and "
                      "winograd for the 3x3 convs, xla and matmul for fc6 / fc7)")
  parser.add_argument("--json", action="store_true")
  parser.add_argument("--figure", default=None, help="a PNG of forward+backward ms per "
                      "layer and implementation")
  args = parser.parse_args()
  layers, rows = NETS[args.net], []
  for name in args.layers.split(",") if args.layers else layers:
    if name not in layers:
      parser.error(f"--layers: {name!r} is not a layer of --net={args.net}: {list(layers)}")
    alt = "winograd" if layers[name][3] == 3 else "matmul"
    for impl in args.impls.split(",") if args.impls else ("xla", alt):
      row = (bench_torch_layer(name, args.batch_size, args.repeats, layers,
                               channels_last=args.net == "decoder") if impl == "torch"
             else bench_layer(name, impl, args.batch_size, args.repeats, layers))
      rows.append(row)
      print(json.dumps(row) if args.json else
            f"{row['layer']:8s} {row['impl']:9s} {row['input']:16s} fwd {row['fwd_ms']:8.1f} ms"
            f"  fwd+bwd {row['fwd_bwd_ms']:8.1f} ms", flush=True)
  if args.figure:
    viz.plot_ablation(args.figure, rows, metric="fwd_bwd_ms", group="layer", label="impl")


if __name__ == "__main__":
  main()
