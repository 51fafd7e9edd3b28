"""Upsampling layers (thin Flax wrappers over `fcnjax.ops.upsample`): FCN's registry.

Every upsampler maps (N, h, w, C) -> (N, h*f, w*f, C) with padding=None
(block-aligned, the 'same' geometry). The transpose-conv ones take padding=0
for the Caffe geometry: kernel 2f, output (h+1)*f, before the reference crop.
"""
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.ops import upsample as ops


def bilinear_init(key, shape, dtype=jnp.float32):
  """Kernel initialiser: (k, k, in, out) bilinear filter on the channel diagonal."""
  del key
  k, _, cin, cout = shape
  return ops.bilinear_kernel(k, max(cin, cout))[:, :, :cin, :cout].astype(dtype)


class TransposeConv(nn.Module):
  """Transpose convolution layer (`ops.upsample.transpose_conv`), HWIO kernel.

  (N, h, w, C) -> (N, (h-1)*s - 2p + k, (w-1)*s - 2p + k, features);
  features=None keeps the input's channel count.
  """
  features: Optional[int]
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    features = self.features or c
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, c, features), self.param_dtype)
    y = ops.transpose_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride,
                           self.padding)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def TransposeConvUpsample(factor, features=None, padding=None, use_bias=False, **kwargs):  # noqa: N802
  """Learnable x`factor` upsampling: kernel 2f, stride f, bilinear initialised,
  no bias (as the reference upscore layers); padding None -> f//2."""
  padding = factor // 2 if padding is None else padding
  return TransposeConv(features, 2 * factor, factor, padding, use_bias,
                       kernel_init=bilinear_init, **kwargs)


class _FixedUpsample(nn.Module):
  """An upsampler without parameters: (N, h, w, C) -> (N, h*f, w*f, C)."""
  factor: int
  padding: Optional[int] = None  # only the bilinear filter has a padding choice
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __call__(self, x):
    return self.upsample(x.astype(self.dtype))


class BilinearUpsample(_FixedUpsample):
  """Fixed bilinear upsampling (kernel 2f, padding None -> f//2, 0 -> Caffe geometry)."""

  def upsample(self, x):
    return ops.bilinear_upsample(x, self.factor, self.padding)


class NearestUpsample(_FixedUpsample):
  """Nearest-neighbour unpooling: each value fills its f x f block."""

  def upsample(self, x):
    return ops.nearest_upsample(x, self.factor)


class BedOfNailsUpsample(_FixedUpsample):
  """Bed of nails: each value at the top-left of its block, zeros elsewhere."""

  def upsample(self, x):
    return ops.bed_of_nails(x, self.factor)


UPSAMPLERS = {
    "learned": TransposeConvUpsample,
    "bilinear": BilinearUpsample,
    "nearest": NearestUpsample,
    "bed_of_nails": BedOfNailsUpsample,
}
# Upsamplers with the kernel-2f transpose-conv geometry the Caffe crops assume.
PAPER_UPSAMPLERS = ("learned", "bilinear")
