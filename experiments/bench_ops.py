"""Upsampling-op benchmark: transpose conv (phase decomposition vs input
dilation) and the memory of max-pool switches.

    python experiments/bench_ops.py [--json]

Both transpose-conv formulations run side by side in one process on the same
inputs; the script checks they agree and prints the speed-up per stride.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnjax.ops import upsample as up

# (stride, kernel, padding, input size, channels): the FCN upsampling layers.
CASES = [(2, 4, 1, 64, 21), (8, 16, 4, 32, 21), (32, 64, 16, 16, 21)]


def dilated_transpose_conv(x, kernel, stride, padding):
  """The input-dilation formulation (what lax.conv_transpose / nn.ConvTranspose do)."""
  k = kernel.shape[0]
  pad = k - 1 - padding
  return lax.conv_transpose(x, kernel[::-1, ::-1], (stride, stride), [(pad, pad)] * 2,
                            dimension_numbers=("NHWC", "HWIO", "NHWC"))


def time_fn(fn, *args, repeats=5):
  out = jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best, out


def bench_transpose_conv(batch=2):
  rows = []
  rng = np.random.default_rng(0)
  for stride, ksize, padding, size, channels in CASES:
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=(ksize, ksize, channels, channels)).astype(np.float32))
    for mode in ("forward", "forward+backward"):
      def wrap(f):
        if mode == "forward":
          return jax.jit(lambda a, k: f(a, k, stride, padding))
        return jax.jit(jax.grad(lambda a, k: (f(a, k, stride, padding) ** 2).sum(), (0, 1)))
      t_phase, y_phase = time_fn(wrap(up.transpose_conv), x, kernel)
      t_dil, y_dil = time_fn(wrap(dilated_transpose_conv), x, kernel)
      err = max(float(jnp.abs(a - b).max() / (jnp.abs(b).max() + 1e-12))
                for a, b in zip(jax.tree.leaves(y_phase), jax.tree.leaves(y_dil)))
      rows.append(dict(name=f"transpose_conv_s{stride}_k{ksize}_{mode}", stride=stride,
                       kernel=ksize, input=f"{batch}x{size}x{size}x{channels}", mode=mode,
                       phase_ms=1e3 * t_phase, dilated_ms=1e3 * t_dil,
                       speedup=t_dil / t_phase, max_rel_diff=err))
  return rows


def bench_switch_memory():
  x = jnp.zeros((1, 224, 224, 64), jnp.float32)
  pooled, switches = up.max_pool_with_switches(x)
  int64_bytes = pooled.size * np.dtype(np.int64).itemsize
  return dict(name="max_pool_switches_224x224x64", pooled_elements=int(pooled.size),
              switch_bytes=int(switches.nbytes), int64_index_bytes=int(int64_bytes),
              bytes_per_element=switches.nbytes / pooled.size,
              ratio_vs_int64=int64_bytes / switches.nbytes)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--json", action="store_true", help="one JSON line per case")
  args = parser.parse_args()
  rows = bench_transpose_conv()
  mem = bench_switch_memory()
  if args.json:
    for row in rows + [mem]:
      print(json.dumps(row))
    return
  print(f"device: {jax.devices()[0].device_kind}")
  print(f"{'case':44s} {'phase ms':>9s} {'dilated ms':>11s} {'speed-up':>9s} {'rel diff':>9s}")
  for r in rows:
    print(f"{r['name']:44s} {r['phase_ms']:9.2f} {r['dilated_ms']:11.2f} "
          f"{r['speedup']:8.1f}x {r['max_rel_diff']:9.1e}")
  print(f"switches: {mem['bytes_per_element']:.0f} byte per pooled element, "
        f"{mem['switch_bytes']} B vs {mem['int64_index_bytes']} B as int64 indices "
        f"({mem['ratio_vs_int64']:.0f}x less)")


if __name__ == "__main__":
  main()
