"""Encoder-decoder networks that upsample with max-unpooling switches.

SegNet (Badrinarayanan et al.): a VGG encoder whose max-pools remember their
switches (1 byte per pooled element); a mirrored decoder puts each value back
with `max_unpool` and densifies it with convolutions.

DeconvNet (Noh et al.): the same encoder, fc6/fc7 as convolutions, then
mirrored stages of max-unpooling followed by learned transpose convolutions
("deconvolution"). Here fc6 is a 7x7 SAME convolution (the paper's is VALID on
a 224x224 input's 7x7 pool5 map) and deconv-fc6 its SAME transpose, so any
input of at least 32x32 works.

Inputs (N, H, W, 3) NHWC, outputs (N, H, W, num_classes) float32 logits.
BatchNorm statistics live in the 'batch_stats' collection (train=True uses
batch statistics; pass axis_name to average them across devices).
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models.heads import TransposeConv
from fcnjax.ops.upsample import max_pool_with_switches, max_unpool


class ConvBNReLU(nn.Module):
  """3x3 conv (or transpose conv) -> BatchNorm -> ReLU."""
  features: int
  transpose: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.transpose:  # stride-1 "deconvolution" with padding 1: same size
      x = TransposeConv(self.features, 3, 1, 1, use_bias=False, **kw)(x)
    else:
      x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, **kw)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name,
                     **kw)(x)
    return nn.relu(x)


class _SwitchEncoderDecoder(nn.Module):
  """Shared skeleton: encoder stages + switch pools, middle, mirrored decoder."""
  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 3, 3, 3)
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  deconv_decoder: bool = False  # DeconvNet: transpose convs in the decoder
  fc_width: int = 0  # DeconvNet: fc6/fc7 width (0 = no fc layers)
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    depth = len(self.stage_sizes)
    if min(x.shape[1:3]) < 2 ** depth:
      raise ValueError(f"input {x.shape[1]}x{x.shape[2]} smaller than the "
                       f"{2 ** depth}x{2 ** depth} the {depth} pooling stages need")
    kw = dict(axis_name=self.axis_name, dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, **kw)
    pools = []
    for s, (n, width) in enumerate(zip(self.stage_sizes, self.widths), start=1):
      for i in range(1, n + 1):
        x = block(width, name=f"conv{s}_{i}")(x, train=train)
      pools.append(max_pool_with_switches(x) + (x.shape[1:3],))
      self.sow("intermediates", f"switches{s}", pools[-1][1])
      x = pools[-1][0]
    if self.fc_width:
      dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
      x = nn.relu(nn.Conv(self.fc_width, (7, 7), padding="SAME", name="fc6", **dense)(x))
      x = nn.relu(nn.Conv(self.fc_width, (1, 1), name="fc7", **dense)(x))
      x = nn.relu(TransposeConv(self.widths[-1], 7, 1, 3, name="deconv_fc6", **dense)(x))
    for s in range(depth, 0, -1):
      _, switches, size = pools[s - 1]
      x = max_unpool(x, switches, output_size=size)
      n, width = self.stage_sizes[s - 1], self.widths[s - 1]
      out = self.widths[s - 2] if s > 1 else self.widths[0]
      for i in range(n, 0, -1):
        x = block(width if i > 1 else out, transpose=self.deconv_decoder,
                  name=f"{'deconv' if self.deconv_decoder else 'dec'}{s}_{i}")(x, train=train)
    score = nn.Conv(self.num_classes, (3, 3) if not self.deconv_decoder else (1, 1),
                    padding="SAME", dtype=self.dtype, param_dtype=self.param_dtype,
                    name="score")(x)
    return score.astype(jnp.float32)


SegNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=False, fc_width=0)
DeconvNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=True, fc_width=4096)
SegNetTiny = functools.partial(SegNet, stage_sizes=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32))
DeconvNetTiny = functools.partial(DeconvNet, stage_sizes=(1, 1, 1, 1, 1),
                                  widths=(8, 16, 16, 32, 32), fc_width=32)
