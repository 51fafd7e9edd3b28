"""The one operator set: `UPSAMPLERS` {name: Upsample subclass}, and `resolve`.

The lecture's operators are defined here (thin wrappers over
`fcnjax.ops.upsample`), today's in `models/modern_upsamplers.py`; the
protocol they follow (what each needs from the encoder, its kind, its
options) is `models/operator.py`. padding=None is the block-aligned ('same')
geometry; the transpose-conv operators take padding=0 for the Caffe geometry
(kernel 2f, output (h+1)*f, before the reference crop). A new operator is
one class plus one line in `UPSAMPLERS`; every family and study picks it up.
"""
from typing import Any, Callable, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import modern_upsamplers as modern
from fcnjax.models.operator import INTERNALS, Operator, Upsample, fit  # noqa: F401 (public names)
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


class NearestUpsample(Upsample):
  """Nearest-neighbour unpooling: each value fills its f x f block."""

  def upsample(self, x, given, size):
    return ops.nearest_upsample(x, self.factor)


class BedOfNailsUpsample(Upsample):
  """Bed of nails: each value at the top-left of its block, zeros elsewhere."""
  dense: ClassVar[bool] = False

  def upsample(self, x, given, size):
    return ops.bed_of_nails(x, self.factor)


class MaxUnpool(Upsample):
  """Max-unpooling: each value back at its window's argmax (the pool's switches)."""
  needs: ClassVar[str] = "switches"
  dense: ClassVar[bool] = False

  def upsample(self, x, switches, size):
    return ops.max_unpool(x, switches, window=self.factor, output_size=size)


class BilinearUpsample(Upsample):
  """Fixed bilinear upsampling (kernel 2f, padding None -> f//2, 0 -> Caffe geometry)."""

  def upsample(self, x, given, size):
    return ops.bilinear_upsample(x, self.factor, self.padding)


class TransposeConvUpsample(Upsample):
  """Learnable transpose conv: kernel 2f, stride f, no bias (as the reference
  upscore layers), padding None -> f//2; channels kept; initialised to the
  bilinear filter, or LeCun-normal with random_init."""
  random_init: bool = False
  learned: ClassVar[bool] = True

  def upsample(self, x, given, size):
    f = self.factor
    padding = f // 2 if self.padding is None else self.padding
    init = nn.initializers.lecun_normal() if self.random_init else bilinear_init
    c = x.shape[-1]
    kernel = self.param("kernel", init, (2 * f, 2 * f, c, c), self.param_dtype)
    self.sow(INTERNALS, "transpose_kernel", kernel)
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
    **modern.VARIANTS,  # pixel shuffle, CARAFE, IndexNet, DySample, FADE, SAPA
}
# The lecture's operators (the recorded upsampling study's arms).
LECTURE_UPSAMPLERS = ("nearest", "bed_of_nails", "max_unpool", "bilinear", "learned",
                      "learned_random")
# Upsamplers with the kernel-2f transpose-conv geometry the Caffe crops assume.
PAPER_UPSAMPLERS = ("learned", "learned_random", "bilinear")


def resolve(upsample, options=None):
  """The `Operator` of a registry name (with config.model.upsample_options), an
  `Upsample` subclass, or an Operator (returned as it is). ValueError naming
  config.model.upsample for an unknown name."""
  if isinstance(upsample, Operator):
    if options:
      raise ValueError(f"options {dict(options)} given with a resolved operator")
    return upsample
  if isinstance(upsample, type) and issubclass(upsample, Upsample):
    return Operator.of(upsample.__name__, upsample, options)
  if upsample not in UPSAMPLERS:
    raise ValueError(f"config.model.upsample={upsample!r}; valid: {tuple(UPSAMPLERS)}")
  return Operator.of(upsample, UPSAMPLERS[upsample], options)
