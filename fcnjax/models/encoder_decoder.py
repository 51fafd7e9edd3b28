"""Encoder-decoder networks that upsample with max-unpooling switches.

SegNet (Badrinarayanan et al.): a VGG encoder whose max-pools remember their
switches (1 byte per pooled element); a mirrored decoder puts each value back
with `max_unpool` and densifies it with convolutions.

DeconvNet (Noh et al.): the same encoder, fc6/fc7 as convolutions, then
mirrored stages of max-unpooling followed by learned transpose convolutions
("deconvolution"); BatchNorm after every layer, fc6, fc7 and deconv-fc6
included, as in the reference.

Departures from the reference nets, each deliberate:
* DeconvNet's fc6 is a 7x7 SAME convolution and deconv-fc6 its SAME transpose
  (7x7 map -> 7x7), where the paper's fc6 is VALID on a 224x224 input's 7x7
  pool5 map (7x7 -> 1x1 -> 7x7): SAME accepts any input of at least 32x32;
  at 224x224 the VALID form is a different (global) layer, not reproduced.
* Pooling is floor mode (`max_pool_with_switches` drops a trailing odd row /
  column and `max_unpool` pads it back with zeros), where Caffe pools in ceil
  mode: at 360x480 the reference pool4 has 23 rows, this one 22. Inputs whose
  sides are multiples of 32 are unaffected.
* Class balancing: the reference SegNet weights the loss by median-frequency
  balancing; here it is the training option `config.class_weighting =
  'median_frequency'` (off by default).
SegNet's decoder ends as the reference does: its last 3x3 conv (conv1_1_D)
maps the stage-1 features straight to the classes (no extra conv-BN-ReLU).

Inputs (N, H, W, 3) NHWC, outputs (N, H, W, num_classes) float32 logits.
BatchNorm statistics live in the 'batch_stats' collection (train=True uses
batch statistics; pass axis_name to average them across devices).
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.upsamplers import MaxUnpool, TransposeConv
from fcnjax.ops.upsample import max_pool_with_switches


class ConvBNReLU(nn.Module):
  """k x k SAME conv (or stride-1 transpose conv) -> BatchNorm -> ReLU."""
  features: int
  kernel_size: int = 3
  transpose: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    k = self.kernel_size
    if self.transpose:  # stride-1 "deconvolution" with padding k//2: same size
      x = TransposeConv(self.features, k, 1, k // 2, use_bias=False, **kw)(x)
    else:
      x = nn.Conv(self.features, (k, k), padding=k // 2, use_bias=False, **kw)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     axis_name=self.axis_name if train else None,
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
      x = block(self.fc_width, kernel_size=7, name="fc6")(x, train=train)
      x = block(self.fc_width, kernel_size=1, name="fc7")(x, train=train)
      x = block(self.widths[-1], kernel_size=7, transpose=True, name="deconv_fc6")(x, train=train)
    for s in range(depth, 0, -1):
      _, switches, size = pools[s - 1]
      x = MaxUnpool(2, dtype=self.dtype, name=f"unpool{s}")(x, switches, size)
      n, width = self.stage_sizes[s - 1], self.widths[s - 1]
      out = self.widths[s - 2] if s > 1 else self.widths[0]
      last = 1 if self.deconv_decoder or s > 1 else 2  # SegNet: the score conv is conv1_1_D
      for i in range(n, last - 1, -1):
        x = block(width if i > 1 else out, transpose=self.deconv_decoder,
                  name=f"{'deconv' if self.deconv_decoder else 'dec'}{s}_{i}")(x, train=train)
    score = nn.Conv(self.num_classes, (3, 3) if not self.deconv_decoder else (1, 1),
                    padding="SAME", dtype=self.dtype, param_dtype=self.param_dtype,
                    name="score")(x)
    return score.astype(jnp.float32)


SegNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=False, fc_width=0)
DeconvNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=True, fc_width=4096)


def _family(name, net):
  def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
    stage_sizes, widths = family.vgg_stages(model_config)
    fc = {"fc_width": 2 * widths[-1]} if name == "deconvnet" and model_config["backbone"] != "vgg16" else {}
    return net(num_classes, stage_sizes=stage_sizes, widths=widths, axis_name=axis_name,
               dtype=dtype, **fc)

  return family.Family(from_config, ("depth",), family.vgg_stage_check)


SEGNET = _family("segnet", SegNet)
DECONVNET = _family("deconvnet", DeconvNet)
