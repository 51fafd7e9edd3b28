"""Compiled memory of `carafe` and `local_similarity` against patches-tensor versions.

    python experiments/operator_memory.py [--size=512] [--channels=64] [--kernel=5] [--factor=2]

For N=1, a size x size output, channels features (float32) and a k x k
window at factor f, prints XLA's compiled memory analysis (temp + output
bytes, from `jax.jit(...).lower(...).compile().memory_analysis()`) as
multiples of the operator's output bytes: (1, size, size, channels) for
carafe, (1, size, size, k*k) for local_similarity (whose queries are
(1, size, size, channels)), for:
  fwd       the operator alone;
  grad      jax.grad of the output's sum w.r.t. both inputs (the forward is
            dead code there: only the backward is measured);
  fwd+vjp   output and both input gradients for a given cotangent, what a
            training step holds; 'temp' is its temp bytes alone (beyond the
            output and the gradients, which have the inputs' sizes).
'ops' is `fcnjax.ops.upsample`; 'naive' builds the (N, Ho, Wo, k*k, C)
patches tensor (unfold at low resolution, nearest upsampling of the patches,
a contraction with the kernels / queries).
"""
import argparse

import jax
import jax.numpy as jnp

from fcnjax.ops import upsample as up


def naive_patches(x, k, f, ho, wo):
  """(N, h, w, C) -> (N, Ho, Wo, k*k, C): x[i//f + a - k//2, j//f + b - k//2], zero outside."""
  n, h, w, c = x.shape
  r = k // 2
  xp = jnp.pad(x, ((0, 0), (r, k - 1 - r), (r, k - 1 - r), (0, 0)))
  patches = jnp.stack([xp[:, a:a + h, b:b + w] for a in range(k) for b in range(k)], axis=3)
  rows, cols = jnp.arange(ho) // f, jnp.arange(wo) // f
  return patches[:, rows][:, :, cols]


def naive_carafe(x, kernels, k, f):
  p = naive_patches(x, k, f, kernels.shape[1], kernels.shape[2])
  return jnp.einsum("nijtc,nijt->nijc", p, kernels)


def naive_similarity(q, keys, k, f):
  p = naive_patches(keys, k, f, q.shape[1], q.shape[2])
  return jnp.einsum("nijtc,nijc->nijt", p, q)


def measure(fn, *args):
  """(temp + output bytes, temp bytes) of fn compiled for args."""
  m = jax.jit(fn).lower(*args).compile().memory_analysis()
  return m.temp_size_in_bytes + m.output_size_in_bytes, m.temp_size_in_bytes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--channels", type=int, default=64)
  parser.add_argument("--kernel", type=int, default=5)
  parser.add_argument("--factor", type=int, default=2)
  a = parser.parse_args()
  k, f, c, s = a.kernel, a.factor, a.channels, a.size
  low = s // f
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  print(f"N=1, {s}x{s} output, C={c}, k={k}, f={f}, float32; temp + output bytes "
        "/ the operator's output bytes")
  cases = {
      "carafe": ((spec(1, low, low, c), spec(1, s, s, k * k), spec(1, s, s, c)),
                 {"ops": lambda x, kk: up.carafe(x, kk, k, f),
                  "naive": lambda x, kk: naive_carafe(x, kk, k, f)}),
      "local_similarity": ((spec(1, s, s, c), spec(1, low, low, c), spec(1, s, s, k * k)),
                           {"ops": lambda q, kk: up.local_similarity(q, kk, k, f),
                            "naive": lambda q, kk: naive_similarity(q, kk, k, f)}),
  }
  print(f"{'operator':18s} {'impl':6s} {'output':>9s} {'fwd':>7s} {'grad':>7s} {'fwd+vjp':>8s} "
        f"{'temp':>7s}")
  for name, ((s0, s1, sg), impls) in cases.items():
    out_bytes = sg.size * 4  # the cotangent has the output's shape
    for impl, fn in impls.items():
      fwd, _ = measure(fn, s0, s1)
      grad, _ = measure(jax.grad(lambda u, v: fn(u, v).sum(), argnums=(0, 1)), s0, s1)

      def fwd_vjp(u, v, g, fn=fn):
        y, vjp = jax.vjp(fn, u, v)
        return (y,) + vjp(g)

      both, temp = measure(fwd_vjp, s0, s1, sg)
      print(f"{name:18s} {impl:6s} {out_bytes / 2**20:5.0f} MiB {fwd / out_bytes:7.2f} "
            f"{grad / out_bytes:7.2f} {both / out_bytes:8.2f} {temp / out_bytes:7.2f}")


if __name__ == "__main__":
  main()
