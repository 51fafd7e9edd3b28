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
* DeconvNet ends as SegNet does: a 3x3 score conv on deconv1_2 (SegNet's
  conv1_1_D), where the reference adds deconv1_1 (conv-BN-ReLU) and a 1x1
  score. At the small widths (16 channels in stage 1) a 1x1 classifier on 16
  ReLU features held DeconvNet at the predict-background floor: overfitting
  one 16-image batch, the reference ending reaches loss 0.25 after 200 Adam
  steps where this one reaches 0.10 (SegNet: 0.02).
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


def switch_encoder(module, x, stage_sizes, widths, *, train, keep_switches=True):
  """The switch-pool encoder of SegNet, DeconvNet and the decoder net.

  Built in the calling module's scope (layers conv{s}_{i}, ConvBNReLU with
  that module's axis_name and dtypes): per stage s, stage_sizes[s-1] 3x3
  conv-BN-ReLU blocks of widths[s-1] channels, then a 2x2 max pool that
  records its switches. x (N, H, W, C), H and W >= 2**len(widths).
  Returns the (N, H/2^d, W/2^d, widths[-1]) bottleneck and, per stage, the
  (switches or None, pre-pool (h, w)) the decoder unpools with; with
  keep_switches the switches are also sown as intermediates 'switches{s}'
  (what the model costs count as kept bytes).
  """
  depth = len(widths)
  if min(x.shape[1:3]) < 2 ** depth:
    raise ValueError(f"input {x.shape[1]}x{x.shape[2]} smaller than the "
                     f"{2 ** depth}x{2 ** depth} the {depth} pooling stages need")
  block = functools.partial(ConvBNReLU, axis_name=module.axis_name, dtype=module.dtype,
                            param_dtype=module.param_dtype)
  pools = []
  for s, (n, width) in enumerate(zip(stage_sizes, widths), start=1):
    for i in range(1, n + 1):
      x = block(width, name=f"conv{s}_{i}")(x, train=train)
    size = x.shape[1:3]
    x, switches = max_pool_with_switches(x)
    if keep_switches:
      module.sow("intermediates", f"switches{s}", switches)
    pools.append((switches if keep_switches else None, size))
  return x, pools


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
    x, pools = switch_encoder(self, x, self.stage_sizes, self.widths, train=train)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    if self.fc_width:
      x = block(self.fc_width, kernel_size=7, name="fc6")(x, train=train)
      x = block(self.fc_width, kernel_size=1, name="fc7")(x, train=train)
      x = block(self.widths[-1], kernel_size=7, transpose=True, name="deconv_fc6")(x, train=train)
    for s in range(depth, 0, -1):
      switches, size = pools[s - 1]
      x = MaxUnpool(2, dtype=self.dtype, name=f"unpool{s}")(x, switches, size)
      n, width = self.stage_sizes[s - 1], self.widths[s - 1]
      out = self.widths[s - 2] if s > 1 else self.widths[0]
      last = 1 if s > 1 else 2  # the score conv is the last stage's last layer (conv1_1_D)
      for i in range(n, last - 1, -1):
        x = block(width if i > 1 else out, transpose=self.deconv_decoder,
                  name=f"{'deconv' if self.deconv_decoder else 'dec'}{s}_{i}")(x, train=train)
    score = nn.Conv(self.num_classes, (3, 3), padding="SAME", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="score")(x)
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
