"""The upsampling operators as Flax modules (thin wrappers over `fcnjax.ops.upsample`).

One set, one signature, used by FCN, the skip-free decoder and the
encoder-decoders alike:

    up = UPSAMPLERS[name](factor, padding=None, dtype=..., name=...)
    y = up(x, switches=None, size=None)

x (N, h, w, C) -> y (N, h*f, w*f, C); `size` (H, W) crops or zero-pads the
result at the bottom/right to the matching pre-pool map's size. An operator
whose class sets `needs_switches` (max-unpooling) takes the (N, h, w, C)
uint8 switches of the max pool it inverts (window = factor); a network
records switches only for such an operator. padding=None is the
block-aligned ('same') geometry; the transpose-conv operators take padding=0
for the Caffe geometry (kernel 2f, output (h+1)*f, before the reference crop).
A new operator is one class here plus one line in `UPSAMPLERS`; every model
and study picks it up.
"""
from typing import Any, Callable, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.ops import upsample as ops


def bilinear_init(key, shape, dtype=jnp.float32):
  """Kernel initialiser: (k, k, in, out) bilinear filter on the channel diagonal."""
  del key
  k, _, cin, cout = shape
  return ops.bilinear_kernel(k, max(cin, cout))[:, :, :cin, :cout].astype(dtype)


def fit(x, size):
  """Zero-pads or crops (N, h, w, C) at the bottom/right to (N, *size, C)."""
  x = x[:, :size[0], :size[1]]
  return jnp.pad(x, ((0, 0), (0, size[0] - x.shape[1]), (0, size[1] - x.shape[2]), (0, 0)))


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


class Upsample(nn.Module):
  """Base of every operator: (x, switches=None, size=None) -> x upsampled x`factor`."""
  factor: int
  padding: Optional[int] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  needs_switches: ClassVar[bool] = False

  @nn.compact
  def __call__(self, x, switches=None, size=None):
    if self.needs_switches and switches is None:
      raise ValueError(f"{type(self).__name__} needs the switches of the max pool it inverts")
    y = self.upsample(x.astype(self.dtype), switches, size)
    return y if size is None else fit(y, size)


class NearestUpsample(Upsample):
  """Nearest-neighbour unpooling: each value fills its f x f block."""

  def upsample(self, x, switches, size):
    return ops.nearest_upsample(x, self.factor)


class BedOfNailsUpsample(Upsample):
  """Bed of nails: each value at the top-left of its block, zeros elsewhere."""

  def upsample(self, x, switches, size):
    return ops.bed_of_nails(x, self.factor)


class MaxUnpool(Upsample):
  """Max-unpooling: each value back at its window's argmax (the pool's switches)."""
  needs_switches: ClassVar[bool] = True

  def upsample(self, x, switches, size):
    return ops.max_unpool(x, switches, window=self.factor, output_size=size)


class BilinearUpsample(Upsample):
  """Fixed bilinear upsampling (kernel 2f, padding None -> f//2, 0 -> Caffe geometry)."""

  def upsample(self, x, switches, size):
    return ops.bilinear_upsample(x, self.factor, self.padding)


class TransposeConvUpsample(Upsample):
  """Learnable transpose conv: kernel 2f, stride f, no bias (as the reference
  upscore layers), padding None -> f//2; channels kept; initialised to the
  bilinear filter, or LeCun-normal with random_init."""
  random_init: bool = False

  def upsample(self, x, switches, size):
    f = self.factor
    padding = f // 2 if self.padding is None else self.padding
    init = nn.initializers.lecun_normal() if self.random_init else bilinear_init
    c = x.shape[-1]
    kernel = self.param("kernel", init, (2 * f, 2 * f, c, c), self.param_dtype)
    return ops.transpose_conv(x, kernel.astype(self.dtype), f, padding)


class RandomTransposeConvUpsample(TransposeConvUpsample):
  """The learnable transpose conv, LeCun-normal initialised."""
  random_init: bool = True


UPSAMPLERS = {
    "nearest": NearestUpsample,
    "bed_of_nails": BedOfNailsUpsample,
    "max_unpool": MaxUnpool,
    "bilinear": BilinearUpsample,
    "learned": TransposeConvUpsample,
    "learned_random": RandomTransposeConvUpsample,
}
# Upsamplers with the kernel-2f transpose-conv geometry the Caffe crops assume.
PAPER_UPSAMPLERS = ("learned", "learned_random", "bilinear")
