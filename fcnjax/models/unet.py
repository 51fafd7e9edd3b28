"""U-Net (Ronneberger et al. 2015) over any registered backbone.

The backbone returns its features by stride (`models/backbones.py`); the
decoder starts at the coarsest one and climbs x2 at a time to stride 1. Each
stage: the upsampling operator (any entry of `UPSAMPLERS`, given what it needs:
`models/operator.py`) -> concatenate the backbone's features of that stride,
where it has them (the skip; a guided operator's backbone also returns the
stride-1 map, so its last stage has one too) -> two
conv-BN-ReLU with as many channels as the skip (half the input's where there
is none). A 1x1 conv gives (N, H, W, num_classes) float32 logits for
(N, H, W, 3) NHWC images of any size. An operator that needs switches
(max-unpooling) gets the backbone without its head (VGG: pool5, not fc7, at
stride 32), recording its pools' switches: every stage then unpools the map
whose channels match the pool's (a SegNet with skips); a backbone that
records none (ResNet) is refused; IndexNet's operators likewise unpool by
the index of each pool, which then pools index-weighted.

The reference U-Net has its own encoder, VALID convolutions and crops; here
the encoder is the backbone (VGG: pool1..pool4 and fc7; ResNet: conv1 and
layer1..layer4), every conv is SAME, so skips line up without cropping.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import backbones, family
from fcnjax.models.encoder_decoder import ConvBNReLU
from fcnjax.models.operator import encoder_input
from fcnjax.models.upsamplers import resolve


def _strides(features):
  return sorted(int(k[len("stride"):]) for k in features if k.startswith("stride"))


class UNet(nn.Module):
  """Backbone -> x2 stages of upsample, skip concatenation, 2 conv-BN-ReLU -> 1x1 score."""
  num_classes: int
  backbone: nn.Module
  upsample: Any = "bilinear"  # a registry name or a resolved operator.Operator
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    op = resolve(self.upsample)
    _, h, w, _ = x.shape
    features = self.backbone(x, train=train)
    strides = _strides(features)
    if not strides:
      raise ValueError(f"the backbone returned {sorted(features)}: no 'stride<s>' features")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, **kw)
    s = strides[-1]
    y = features[f"stride{s}"].astype(self.dtype)
    while s > 1:
      given = encoder_input(op, features, s)  # switches / index of the pool to stride s
      s //= 2
      skip = features.get(f"stride{s}")
      size = skip.shape[1:3] if skip is not None else (-(-h // s), -(-w // s))  # ceil, symbolic-safe
      y = op(2, name=f"up{s}", **kw)(y, given, size)
      width = skip.shape[-1] if skip is not None else max(y.shape[-1] // 2, 8)
      if skip is not None:
        y = jnp.concatenate([y, skip.astype(self.dtype)], axis=-1)
      y = block(width, name=f"dec{s}_1")(y, train=train)
      y = block(width, name=f"dec{s}_2")(y, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(y)
    return score.astype(jnp.float32)


def _built(model_config, axis_name=None, dtype=jnp.float32):
  """The operator, and the backbone providing what it needs: without its head when
  it unpools by the pools' switches or index (VGG: pool5, not fc7, at stride 32)."""
  op = resolve(model_config["upsample"], model_config.get("upsample_options"))
  head = op.needs not in ("switches", "index")
  return op, backbones.build(model_config, op, head=head, axis_name=axis_name, dtype=dtype)


def check(model_config, input_size=None):
  """upsample: what it needs from a backbone that can provide it, and an input that
  passes all floor pools."""
  op, backbone = _built(model_config)  # ValueError where the backbone cannot provide it
  if op.needs in ("switches", "index"):
    family.check_input_size(model_config, backbone, input_size)


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  op, backbone = _built(model_config, axis_name, dtype)
  return UNet(num_classes, backbone=backbone, upsample=op, axis_name=axis_name, dtype=dtype)


FAMILY = family.Family(from_config, ("upsample", "upsample_options", "dropout_rate"), check,
                       defaults={"upsample": "bilinear"})
