"""Convolution as a matrix X, transpose convolution as X^T (the lecture's example).

    python experiments/transpose_conv_as_matrix.py --out=experiments/results/transpose_conv

1-D, filter (x, y, z), symbolic:
* stride 1, padding 1 on (a, b, c, d): X is the 4x4 banded matrix, X^T its
  mirror (a stride-1 transpose conv is a conv with the flipped filter);
* stride 2 on the padded input (0, a, b, c, d, 0): X is 2x6 and
  X^T (a, b) = (ax, ay, az + bx, by, bz, 0): the output is longer than the
  input and overlapping copies of the filter are summed.
Saves OUT/conv_matrix.png (X and X^T of both cases), then checks in 2-D that
`fcnjax.ops.upsample.transpose_conv` is the adjoint of the strided conv,
<conv(a), b> == <a, transpose_conv(b)>, and its vector-Jacobian product.
Exits non-zero if an error exceeds 1e-4.
"""
import argparse
import os
import sys

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import sympy

from fcnjax.ops import conv_matrix as cm
from fcnjax.ops import upsample as up

x, y, z, a, b, c, d = sympy.symbols("x y z a b c d")
TOLERANCE = 1e-4
# (kernel size, stride, padding) of the 2-D adjoint check: same-size conv,
# the x2 decoder layer, an odd kernel at stride 2, FCN's x8 upsampling.
ADJOINT_CASES = [(3, 1, 1), (4, 2, 1), (3, 2, 1), (16, 8, 4)]


def one_d_examples():
  """The lecture's 1-D cases with filter (x, y, z).

  Returns {name: dict(X, input, conv, v, transpose)}, sympy matrices:
  X (out_len, in_len); conv = X @ input; transpose = X^T @ v (in_len, 1),
  equal to the scatter `transpose_conv_1d(v, ...)` (checked here).
  """
  kernel = np.array([x, y, z], dtype=object)
  cases = {
      # padding 1 inside the matrix: X is (4, 4) on (a, b, c, d).
      "stride 1, padding 1": dict(length=4, stride=1, padding=1,
                                  input=[a, b, c, d], v=[a, b, c, d]),
      # padding 1 written into the input, as in the lecture: X is (2, 6).
      "stride 2, padding 1": dict(length=6, stride=2, padding=0,
                                  input=[0, a, b, c, d, 0], v=[a, b]),
  }
  out = {}
  for name, case in cases.items():
    X = sympy.Matrix(cm.conv_matrix_1d(kernel, case["length"], case["stride"], case["padding"]))
    transpose = (X.T * sympy.Matrix(case["v"])).expand()
    scatter = cm.transpose_conv_1d(np.array(case["v"], dtype=object), kernel, case["stride"],
                                   case["padding"], length=case["length"])
    if sympy.Matrix([sympy.expand(e) for e in scatter]) != transpose:
      raise AssertionError(f"{name}: scatter transpose conv != X^T v")
    out[name] = dict(X=X, input=sympy.Matrix(case["input"]), v=sympy.Matrix(case["v"]),
                     conv=(X * sympy.Matrix(case["input"])).expand(), transpose=transpose)
  return out


def format_matrix(m):
  """A sympy matrix as text, one bracketed row a line."""
  return "\n".join("[" + " ".join(f"{str(e):>2}" for e in row) + " ]" for row in m.tolist())


def _show_matrix(ax, m, title, fontsize=12, aspect="equal"):
  """imshow of the nonzero mask of a sympy matrix, each cell labelled."""
  mask = np.array([[e != 0 for e in row] for row in m.tolist()], dtype=float)
  ax.imshow(mask, cmap="Blues", vmin=0, vmax=1.6, aspect=aspect)
  for (i, j), e in np.ndenumerate(np.array(m.tolist(), dtype=object)):
    ax.text(j, i, str(e), ha="center", va="center", fontsize=fontsize)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(title, fontsize=10)


def plot_examples(examples, path):
  """One row per case: X, X^T and the column X^T v. Writes a PNG to `path`."""
  fig, axes = plt.subplots(len(examples), 3, figsize=(12, 3.4 * len(examples)),
                           gridspec_kw=dict(width_ratios=[3, 3, 2]))
  for row, (name, e) in zip(axes, examples.items()):
    rows, cols = e["X"].shape
    inputs = ", ".join(map(str, e["input"]))
    _show_matrix(row[0], e["X"], f"{name}\nX ({rows}x{cols}): conv({inputs}) = X a")
    _show_matrix(row[1], e["X"].T, f"X^T ({cols}x{rows})")
    _show_matrix(row[2], e["transpose"], f"X^T ({', '.join(map(str, e['v']))})",
                 fontsize=10, aspect="auto")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def strided_conv(a, kernel, stride, padding):
  """The forward conv whose adjoint is `transpose_conv(., kernel, ...)`.

  out[i] = sum_k a[i*s + k - p] K[k]: a (N, H, W, Cout) -> (N, h, w, Cin),
  with K (kh, kw, Cin, Cout) used as HWIO with in/out swapped.
  """
  return jax.lax.conv_general_dilated(
      a, jnp.swapaxes(kernel, 2, 3), (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)


def _unit(v):
  return jnp.asarray(v / np.linalg.norm(v), jnp.float32)


def adjoint_error(ksize, stride, padding, size=6, channels=(3, 5), seed=0):
  """Random unit-norm b (1, size, size, Cin), a (1, n, n, Cout) with n the
  transpose's output size, normal K (k, k, Cin, Cout); float32 ops.

  Returns (|<conv(a), b> - <a, transpose_conv(b)>|, max |vjp_conv(b) - transpose_conv(b)|),
  inner products accumulated in float64.
  """
  cin, cout = channels
  rng = np.random.default_rng(seed)
  kernel = jnp.asarray(rng.normal(size=(ksize, ksize, cin, cout)), jnp.float32)
  bvec = _unit(rng.normal(size=(1, size, size, cin)))
  n = (size - 1) * stride - 2 * padding + ksize
  avec = _unit(rng.normal(size=(1, n, n, cout)))
  forward, vjp = jax.vjp(lambda u: strided_conv(u, kernel, stride, padding), avec)
  if forward.shape != bvec.shape:
    raise AssertionError(f"conv output {forward.shape} != {bvec.shape}")
  back = up.transpose_conv(bvec, kernel, stride, padding)
  lhs = np.vdot(np.asarray(forward, np.float64), np.asarray(bvec, np.float64))
  rhs = np.vdot(np.asarray(avec, np.float64), np.asarray(back, np.float64))
  return float(abs(lhs - rhs)), float(jnp.abs(vjp(bvec)[0] - back).max())


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--out", default="experiments/results/transpose_conv")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  examples = one_d_examples()
  for name, e in examples.items():
    print(f"== filter (x, y, z), {name}: conv({', '.join(map(str, e['input']))}) = X a")
    print(f"X =\n{format_matrix(e['X'])}")
    print(f"X a = {tuple(e['conv'])}")
    print(f"X^T =\n{format_matrix(e['X'].T)}")
    print(f"X^T {tuple(e['v'])} = {tuple(e['transpose'])}  "
          f"(length {len(e['v'])} -> {len(e['transpose'])})\n")
  plot_examples(examples, os.path.join(args.out, "conv_matrix.png"))
  print("2-D adjoint of fcnjax.ops.upsample.transpose_conv (float32; 6x6x3 -> nxnx5; "
        "unit-norm a, b; normal kernel):")
  print(f"{'kernel':>6} {'stride':>6} {'pad':>4} {'|<Xa,b>-<a,X^T b>|':>20} {'max|vjp - X^T b|':>17}")
  worst = 0.0
  for ksize, stride, padding in ADJOINT_CASES:
    inner, vjp = adjoint_error(ksize, stride, padding)
    worst = max(worst, inner, vjp)
    print(f"{ksize:>6} {stride:>6} {padding:>4} {inner:>20.2e} {vjp:>17.2e}")
  print(f"max abs error {worst:.2e} (tolerance {TOLERANCE:.0e}); "
        f"figure {os.path.join(args.out, 'conv_matrix.png')}")
  if worst > TOLERANCE:
    sys.exit(1)


if __name__ == "__main__":
  main()
