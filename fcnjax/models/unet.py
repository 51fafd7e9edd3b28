"""U-Net (Ronneberger et al. 2015) over any registered backbone.

The backbone returns its features by stride (`models/backbones.py`); the
decoder starts at the coarsest one and climbs x2 at a time to stride 1. Each
stage: the upsampling operator (any entry of `UPSAMPLERS` that needs no
switches) -> concatenate the backbone's features of that stride, where it
has them (the skip) -> two conv-BN-ReLU with as many channels as the skip
(half the input's where there is none). A 1x1 conv gives (N, H, W,
num_classes) float32 logits for (N, H, W, 3) NHWC images of any size.

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
      s //= 2
      y = UPSAMPLERS[self.upsample](2, name=f"up{s}", **kw)(
          y, size=(math.ceil(h / s), math.ceil(w / s)))
      skip = features.get(f"stride{s}")
      width = skip.shape[-1] if skip is not None else max(y.shape[-1] // 2, 8)
      if skip is not None:
        y = jnp.concatenate([y, skip.astype(self.dtype)], axis=-1)
      y = block(width, name=f"dec{s}_1")(y, train=train)
      y = block(width, name=f"dec{s}_2")(y, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(y)
    return score.astype(jnp.float32)


def check(model_config, input_size=None):
  """upsample: an operator without switches; the backbone in its 'same' geometry."""
  del input_size  # any size: the skips are fitted to ceil(H / s)
  name = model_config["upsample"]
  family.choice("upsample", name, UPSAMPLERS, " for unet")
  if UPSAMPLERS[name].needs_switches:
    raise ValueError(f"config.model.upsample={name!r} needs pooling switches, which no "
                     "backbone returns; use one of "
                     f"{tuple(k for k, v in UPSAMPLERS.items() if not v.needs_switches)}")


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  from fcnjax.models.backbones import BACKBONES
  backbone = BACKBONES[model_config["backbone"]](model_config, axis_name=axis_name, dtype=dtype)
  return UNet(num_classes, backbone=backbone, upsample=model_config["upsample"],
              axis_name=axis_name, dtype=dtype)


FAMILY = family.Family(from_config, ("upsample", "dropout_rate"), check)
