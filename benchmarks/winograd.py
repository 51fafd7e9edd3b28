"""Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016) as batched matmuls.

Each 2x2 output tile of a 3x3 stride-1 convolution is A^T [(G g G^T) * (B^T d B)] A
over the 4x4 input tile d: 16 (tiles, Cin) @ (Cin, Cout) matmuls instead of
36 multiply-adds per input/output channel pair, 2.25x fewer multiplications.
The transforms are adds and subtractions of strided slices, so gradients are
plain XLA ops. f32 error vs `lax.conv_general_dilated`: a few 1e-7 relative
to the output's largest magnitude (tests/test_bench.py).
"""
import math

import jax.numpy as jnp
from jax import lax

from fcnjax.ops.fc import NHWC, is_nhwc

# Kernel transform G (4x3): U = G g G^T.
G = jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _input_transform(d):
  """B^T d along one axis: 4 slices -> 4 transformed slices."""
  return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _output_transform(m):
  """A^T m along one axis: 4 slices -> the 2 outputs of a tile."""
  return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def _slices(x, axis, n):
  """The 4 stride-2 slices x[a : a + 2n - 1 : 2] (n elements) along `axis`, a = 0..3."""
  return [lax.slice_in_dim(x, a, a + 2 * n - 1, 2, axis) for a in range(4)]


def winograd_conv3x3(x, kernel, padding=((1, 1), (1, 1))):
  """3x3 stride-1 convolution (cross-correlation, as lax.conv).

  x: (N, H, W, Cin); kernel: (3, 3, Cin, Cout), HWIO; padding ((top, bottom),
  (left, right)). Returns (N, H + top + bottom - 2, W + left + right - 2, Cout).
  """
  n, h, w, _ = x.shape
  cout = kernel.shape[-1]
  (pt, pb), (pl, pr) = padding
  oh, ow = h + pt + pb - 2, w + pl + pr - 2
  th, tw = math.ceil(oh / 2), math.ceil(ow / 2)
  xp = jnp.pad(x, ((0, 0), (pt, 2 * th + 2 - h - pt), (pl, 2 * tw + 2 - w - pl), (0, 0)))
  v = [c for r in _input_transform(_slices(xp, 1, th))
       for c in _input_transform(_slices(r, 2, tw))]
  v = jnp.stack(v)  # (16, N, th, tw, Cin)
  u = jnp.einsum("ai,bj,ijco->abco", G.astype(kernel.dtype), G.astype(kernel.dtype), kernel)
  m = jnp.einsum("tnhwc,tco->tnhwo", v, u.reshape(16, *kernel.shape[2:]))
  m = m.reshape(4, 4, n, th, tw, cout)
  y = jnp.stack([jnp.stack(_output_transform([r[b] for b in range(4)]))
                 for r in _output_transform([m[a] for a in range(4)])])  # (2, 2, N, th, tw, Cout)
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, cout)
  return y[:, :oh, :ow]


def conv_general_dilated(lhs, rhs, window_strides=(1, 1), padding="SAME", lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=NHWC, feature_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` with `winograd_conv3x3` for NHWC 3x3 stride-1
  convolutions (the drop-in for `flax.linen.Conv(conv_general_dilated=...)`);
  any other convolution goes to lax."""
  unit = lambda v: v is None or all(d == 1 for d in v)
  if (lhs.ndim == 4 and is_nhwc(lhs, rhs, dimension_numbers) and rhs.shape[:2] == (3, 3)
      and unit(window_strides) and unit(lhs_dilation) and unit(rhs_dilation)
      and feature_group_count == 1):
    pads = (lax.padtype_to_pads(lhs.shape[1:3], (3, 3), (1, 1), padding)
            if isinstance(padding, str) else padding)
    return winograd_conv3x3(lhs, rhs, [tuple(p) for p in pads])
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  precision=precision,
                                  preferred_element_type=preferred_element_type)
