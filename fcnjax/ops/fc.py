"""Stride-1 convolutions written as one matmul (im2col), for VGG's fc6 / fc7.

`conv_as_matmul` has `lax.conv_general_dilated`'s signature, so it drops into
`flax.linen.Conv(conv_general_dilated=...)` and the layer keeps its parameters
(`kernel` (kh, kw, Cin, Cout), `bias`). A k x k conv on an (h, w) map is
patches (N*h'*w', kh*kw*Cin) @ kernel (kh*kw*Cin, Cout); its gradients are
matmuls too, which XLA:CPU runs faster than its backward convolutions for
these large-kernel, low-resolution layers (fc6: 7x7x512 -> 4096 on 7x7).
"""
import jax.numpy as jnp
from jax import lax


def _pads(padding, spatial, kernel):
  """Explicit ((top, bottom), (left, right)) from 'SAME' / 'VALID' / pairs."""
  if isinstance(padding, str):
    return lax.padtype_to_pads(spatial, kernel, (1, 1), padding)
  return [tuple(p) for p in padding]


def patches(x, kh, kw, pads):
  """im2col: (N, H, W, C) -> (N, H', W', kh*kw*C), features ordered (i, j, c)
  like `kernel.reshape(kh*kw*C, Cout)`; H' = H + pad_h - kh + 1."""
  (pt, pb), (pl, pr) = pads
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  if kh == kw == 1:
    return xp
  return jnp.concatenate([xp[:, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw)],
                         axis=-1)


NHWC = ("NHWC", "HWIO", "NHWC")


def is_nhwc(lhs, rhs, dimension_numbers):
  """Whether conv dimension_numbers (None, strings or ConvDimensionNumbers) mean
  NHWC input, HWIO kernel, NHWC output; None is lax's default, NCHW."""
  if dimension_numbers is None:
    return False
  want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
  return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == want


def conv_as_matmul(lhs, rhs, window_strides=(1, 1), padding="SAME", lhs_dilation=None,
                   rhs_dilation=None, dimension_numbers=NHWC, feature_group_count=1,
                   precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` for NHWC input, HWIO kernel, stride 1, no
  dilation or groups: lhs (N, H, W, Cin), rhs (kh, kw, Cin, Cout) ->
  (N, H', W', Cout). Equal to the convolution up to float summation order."""
  unit = lambda v: v is None or all(d == 1 for d in v)
  if not (unit(window_strides) and unit(lhs_dilation) and unit(rhs_dilation)
          and feature_group_count == 1):
    raise ValueError("conv_as_matmul: stride 1, no dilation, no feature groups only")
  if lhs.ndim != 4 or not is_nhwc(lhs, rhs, dimension_numbers):
    raise ValueError(f"conv_as_matmul: NHWC / HWIO only, got {dimension_numbers}")
  kh, kw, cin, cout = rhs.shape
  cols = patches(lhs, kh, kw, _pads(padding, lhs.shape[1:3], (kh, kw)))
  return jnp.matmul(cols, rhs.reshape(kh * kw * cin, cout), precision=precision,
                    preferred_element_type=preferred_element_type)


# Implementations of VGG's fc6 / fc7 convolutions, by name (VGGBackbone.fc_impl).
FC_IMPLS = {"xla": lax.conv_general_dilated, "matmul": conv_as_matmul}
