"""Score head and upsampling modules (thin wrappers over `fcnjax.ops.upsample`).

Every upsampler maps (N, h, w, C) -> (N, h*f, w*f, C) with padding=None
(block-aligned, the 'same' geometry). The transpose-conv ones take padding=0
for the Caffe geometry: kernel 2f, output (h+1)*f, before the reference crop.
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.ops import upsample as ops


class ScoreHead(nn.Module):
  """1x1 convolution to class scores; zero_init as in the reference FCN."""
  num_classes: int
  zero_init: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
    return nn.Conv(self.num_classes, (1, 1), kernel_init=init, dtype=self.dtype,
                   param_dtype=self.param_dtype)(x)


class TransposeConvUpsample(nn.Module):
  """Learnable transpose conv, kernel 2f, stride f, initialised to bilinear.

  kernel (2f, 2f, C, features) with the bilinear filter on the channel
  diagonal; no bias (as the reference upscore layers).
  """
  factor: int
  features: Optional[int] = None
  padding: Optional[int] = None
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    features = self.features or c
    k = 2 * self.factor

    def init(key, shape, dtype):
      del key
      kernel = ops.bilinear_kernel(k, max(c, features))[:, :, :c, :features]
      return kernel.astype(dtype)

    kernel = self.param("kernel", init, (k, k, c, features), self.param_dtype)
    pad = self.factor // 2 if self.padding is None else self.padding
    y = ops.transpose_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.factor, pad)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
    return y


class BilinearUpsample(nn.Module):
  """Fixed bilinear upsampling (no parameters)."""
  factor: int
  padding: Optional[int] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return ops.bilinear_upsample(x.astype(self.dtype), self.factor, self.padding)


class NearestUpsample(nn.Module):
  """Nearest-neighbour unpooling: each value fills its f x f block."""
  factor: int
  padding: Optional[int] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return ops.nearest_upsample(x.astype(self.dtype), self.factor)


class BedOfNailsUpsample(nn.Module):
  """Bed of nails: each value at the top-left of its block, zeros elsewhere."""
  factor: int
  padding: Optional[int] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return ops.bed_of_nails(x.astype(self.dtype), self.factor)


UPSAMPLERS = {
    "learned": TransposeConvUpsample,
    "bilinear": BilinearUpsample,
    "nearest": NearestUpsample,
    "bed_of_nails": BedOfNailsUpsample,
}
# Upsamplers with the kernel-2f transpose-conv geometry the Caffe crops assume.
PAPER_UPSAMPLERS = ("learned", "bilinear")
