"""U-Net (Ronneberger et al. 2015) over any registered backbone.

The backbone returns its features by stride (`models/backbones.py`); the
decoder starts at the coarsest one and climbs x2 at a time to stride 1. Each
stage: the upsampling operator (any entry of `UPSAMPLERS`) -> concatenate the
backbone's features of that stride, where it has them (the skip) -> two
conv-BN-ReLU with as many channels as the skip (half the input's where there
is none). A 1x1 conv gives (N, H, W, num_classes) float32 logits for
(N, H, W, 3) NHWC images of any size. An operator that needs switches
(max-unpooling) gets the backbone without its head (VGG: pool5, not fc7, at
stride 32), recording its pools' switches: every stage then unpools the map
whose channels match the pool's (a SegNet with skips); a backbone that
records none (ResNet) is refused.

The reference U-Net has its own encoder, VALID convolutions and crops; here
the encoder is the backbone (VGG: pool1..pool4 and fc7; ResNet: conv1 and
layer1..layer4), every conv is SAME, so skips line up without cropping.
"""
import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.encoder_decoder import ConvBNReLU
from fcnjax.models.upsamplers import UPSAMPLERS


def _strides(features):
  return sorted(int(k[len("stride"):]) for k in features if k.startswith("stride"))


class UNet(nn.Module):
  """Backbone -> x2 stages of upsample, skip concatenation, 2 conv-BN-ReLU -> 1x1 score."""
  num_classes: int
  backbone: nn.Module
  upsample: str = "bilinear"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
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
      switches = features.get("switches", {}).get(f"stride{s}")  # of the pool to stride s
      s //= 2
      skip = features.get(f"stride{s}")
      size = skip.shape[1:3] if skip is not None else (math.ceil(h / s), math.ceil(w / s))
      y = UPSAMPLERS[self.upsample](2, name=f"up{s}", **kw)(y, switches, size)
      width = skip.shape[-1] if skip is not None else max(y.shape[-1] // 2, 8)
      if skip is not None:
        y = jnp.concatenate([y, skip.astype(self.dtype)], axis=-1)
      y = block(width, name=f"dec{s}_1")(y, train=train)
      y = block(width, name=f"dec{s}_2")(y, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(y)
    return score.astype(jnp.float32)


def _backbone(model_config, axis_name=None, dtype=jnp.float32):
  """The backbone; without its head and recording switches if the operator needs them."""
  switches = UPSAMPLERS[model_config["upsample"]].needs_switches
  return family.backbone(model_config, head=not switches, switches=switches,
                         axis_name=axis_name, dtype=dtype)


def check(model_config, input_size=None):
  """upsample: one of UPSAMPLERS, with switches only on a backbone that records them."""
  family.choice("upsample", model_config["upsample"], UPSAMPLERS, " for unet")
  backbone = _backbone(model_config)  # ValueError where switches cannot be recorded
  if UPSAMPLERS[model_config["upsample"]].needs_switches:
    family.check_input_size(model_config, backbone, input_size)


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  return UNet(num_classes, backbone=_backbone(model_config, axis_name, dtype),
              upsample=model_config["upsample"], axis_name=axis_name, dtype=dtype)


FAMILY = family.Family(from_config, ("upsample", "dropout_rate"), check)
