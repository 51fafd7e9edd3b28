"""Encoder-decoder networks that upsample with max-unpooling switches (or any operator).

SegNet (Badrinarayanan et al.): a VGG encoder whose max-pools remember their
switches (1 byte per pooled element; `VGGBackbone(switches=True)`, any
registered backbone that records them); a mirrored decoder puts each value
back with `max_unpool` and densifies it with convolutions.

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
The encoder is the backbone's ('backbone' subtree): with 'vgg16_bn' it is
the reference's (3x3 conv with bias -> BN -> ReLU); with 'vgg16' or 'tiny'
it has no BatchNorm. The decoder mirrors the encoder's stage sizes.

Both take any operator of the one set in place of max-unpooling
(config.model.upsample; the decoder stages keep their names, 'unpool{s}').

Inputs (N, H, W, 3) NHWC, outputs (N, H, W, num_classes) float32 logits.
BatchNorm statistics live in the 'batch_stats' collection (train=True uses
batch statistics; pass axis_name to average them across devices).
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import backbones, family
from fcnjax.models.operator import encoder_input
from fcnjax.models.upsamplers import TransposeConv, resolve


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
  """Shared skeleton: backbone, middle, mirrored decoder.

  backbone: an unbound module returning features by stride and what the
  operator needs (max-unpooling: features['switches'], `VGGBackbone(head=False,
  switches=True)`); stage_sizes: its convs per stage, which the decoder
  mirrors; upsample: the operator of every decoder stage (a registry name or
  a resolved `operator.Operator`; the reference nets': max_unpool).
  """
  num_classes: int
  backbone: nn.Module
  stage_sizes: Sequence[int]
  deconv_decoder: bool = False  # DeconvNet: transpose convs in the decoder
  fc_width: int = 0  # DeconvNet: fc6/fc7 width (0: no fc layers; None: 2x the bottleneck's)
  upsample: Any = "max_unpool"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    op = resolve(self.upsample)
    _, h, w, _ = x.shape
    features = self.backbone(x, train=train)
    depth = len(self.stage_sizes)
    family.require(features, [f"stride{2 ** s}" for s in range(1, depth + 1)],
                   type(self).__name__)
    maps = [features[f"stride{2 ** s}"] for s in range(1, depth + 1)]
    widths = [m.shape[-1] for m in maps]
    sizes = [(h, w)] + [m.shape[1:3] for m in maps]  # pre-pool sizes, stage by stage
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    x = maps[-1]
    if self.fc_width != 0:
      fc_width = self.fc_width or 2 * widths[-1]
      x = block(fc_width, kernel_size=7, name="fc6")(x, train=train)
      x = block(fc_width, kernel_size=1, name="fc7")(x, train=train)
      x = block(widths[-1], kernel_size=7, transpose=True, name="deconv_fc6")(x, train=train)
    for s in range(depth, 0, -1):
      given = encoder_input(op, features, 2 ** s)
      x = op(2, dtype=self.dtype, param_dtype=self.param_dtype, name=f"unpool{s}")(
          x, given, sizes[s - 1])
      n, width = self.stage_sizes[s - 1], widths[s - 1]
      out = widths[s - 2] if s > 1 else widths[0]
      last = 1 if s > 1 else 2  # the score conv is the last stage's last layer (conv1_1_D)
      for i in range(n, last - 1, -1):
        x = block(width if i > 1 else out, transpose=self.deconv_decoder,
                  name=f"{'deconv' if self.deconv_decoder else 'dec'}{s}_{i}")(x, train=train)
    score = nn.Conv(self.num_classes, (3, 3), padding="SAME", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="score")(x)
    return score.astype(jnp.float32)


SegNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=False, fc_width=0)
DeconvNet = functools.partial(_SwitchEncoderDecoder, deconv_decoder=True, fc_width=None)


def _family(net):
  def built(model_config, axis_name=None, dtype=jnp.float32):
    op = resolve(model_config["upsample"], model_config.get("upsample_options"))
    backbone = backbones.encoder(model_config, op, axis_name=axis_name, dtype=dtype)
    stages = getattr(backbone, "stage_sizes", ())
    if len(stages) != backbone.coarsest_stride.bit_length() - 1:
      raise ValueError(f"config.model.backbone={model_config['backbone']!r}: "
                       f"config.model.name={model_config['name']!r} mirrors an encoder of "
                       "conv stages each closed by a 2x2 pool (a VGG size)")
    return op, backbone

  def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
    op, backbone = built(model_config, axis_name, dtype)
    # DeconvNet's fc6 / fc7: VGG16's 4096 channels, else twice the bottleneck's.
    fc = {"fc_width": 4096} if net is DeconvNet and model_config["backbone"].startswith(
        "vgg16") else {}
    return net(num_classes, backbone=backbone, stage_sizes=backbone.stage_sizes,
               upsample=op, axis_name=axis_name, dtype=dtype, **fc)

  def check(model_config, input_size=None):
    family.check_input_size(model_config, built(model_config)[1], input_size)

  return family.Family(from_config, ("depth", "upsample", "upsample_options"), check,
                       defaults={"upsample": "max_unpool"})


SEGNET = _family(SegNet)
DECONVNET = _family(DeconvNet)
