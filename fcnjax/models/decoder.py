"""An encoder-decoder in which the x2 upsampling operator is the only variable.

Encoder: `len(widths)` stages of conv-BN-ReLU blocks, each closed by a 2x2 max
pool that records its switches (uint8, 1 byte per pooled element). Decoder:
the mirrored stages, each *upsample x2 -> conv-BN-ReLU* (as in SegNet and the
lecture: a parameter-free operator such as bed of nails is followed by learned
filters). No skip connections, so the operator alone carries the spatial
detail back up; a 1x1 score conv gives (N, H, W, num_classes) float32 logits.

A decoder upsampler is a function `(x, switches, size, **kw) -> y` called
inside the module (so it may create layers): x (N, h, w, C) -> y (N, H, W, C)
with (H, W) = `size`, the matching pre-pool map's size, and `switches` that
pool's (N, h, w, C) argmax offsets. Adding a variant is one function plus one
line in `DECODER_UPSAMPLERS`; `experiments/upsampling_study.py` picks it up.
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models.encoder_decoder import ConvBNReLU
from fcnjax.models.upsamplers import TransposeConv, TransposeConvUpsample
from fcnjax.ops import upsample as ops


def fit(x, size):
  """Zero-pads or crops (N, h, w, C) at the bottom/right to (N, *size, C)."""
  x = x[:, :size[0], :size[1]]
  return jnp.pad(x, ((0, 0), (0, size[0] - x.shape[1]), (0, size[1] - x.shape[2]), (0, 0)))


def nearest(x, switches, size, **kw):
  return fit(ops.nearest_upsample(x, 2), size)


def bed_of_nails(x, switches, size, **kw):
  return fit(ops.bed_of_nails(x, 2), size)


def max_unpool(x, switches, size, **kw):
  return ops.max_unpool(x, switches, output_size=size)


def bilinear(x, switches, size, **kw):
  return fit(ops.bilinear_upsample(x, 2), size)


def learned(x, switches, size, **kw):
  """Transpose conv, kernel 4, stride 2, padding 1, bilinear initialised."""
  return fit(TransposeConvUpsample(2, **kw)(x), size)


def learned_random(x, switches, size, **kw):
  """The same transpose conv, LeCun-normal initialised."""
  return fit(TransposeConv(None, 4, 2, 1, use_bias=False, **kw)(x), size)


DECODER_UPSAMPLERS = {
    "nearest": nearest,
    "bed_of_nails": bed_of_nails,
    "max_unpool": max_unpool,
    "bilinear": bilinear,
    "learned": learned,
    "learned_random": learned_random,
}


# Encoder sizes per backbone name: (widths, convs per encoder stage).
DECODER_SIZES = {"vgg16": ((64, 128, 256, 512, 512), 2), "small": ((16, 32, 64, 96), 2),
                 "tiny": ((8, 16, 16, 32), 1)}


class UpsamplingDecoderNet(nn.Module):
  """Encoder with switch pools + skip-free decoder of x2 `upsample` stages.

  widths: channels per encoder stage (one pool each, so the input needs at
  least 2^len(widths) rows and columns); convs_per_stage conv-BN-ReLU blocks
  per encoder stage, one per decoder stage.
  """
  num_classes: int
  upsample: str = "max_unpool"
  widths: Sequence[int] = (16, 32, 64, 96)
  convs_per_stage: int = 2
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    if self.upsample not in DECODER_UPSAMPLERS:
      raise ValueError(f"upsample={self.upsample!r}; valid: {tuple(DECODER_UPSAMPLERS)}")
    depth = len(self.widths)
    if min(x.shape[1:3]) < 2 ** depth:
      raise ValueError(f"input {x.shape[1]}x{x.shape[2]} smaller than the "
                       f"{2 ** depth}x{2 ** depth} the {depth} pooling stages need")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, **kw)
    x = x.astype(self.dtype)
    pools = []
    for s, width in enumerate(self.widths, start=1):
      for i in range(1, self.convs_per_stage + 1):
        x = block(width, name=f"conv{s}_{i}")(x, train=train)
      size = x.shape[1:3]
      x, switches = ops.max_pool_with_switches(x)
      self.sow("intermediates", f"switches{s}", switches)  # kept only by max_unpool
      pools.append((switches, size))
    up = DECODER_UPSAMPLERS[self.upsample]
    for s in range(depth, 0, -1):
      switches, size = pools[s - 1]
      x = up(x, switches, size, **kw)
      out = self.widths[s - 2] if s > 1 else self.widths[0]
      x = block(out, name=f"dec{s}")(x, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(x)
    return score.astype(jnp.float32)
