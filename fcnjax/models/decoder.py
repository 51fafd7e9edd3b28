"""An encoder-decoder in which the x2 upsampling operator is the only variable.

Encoder: any registered backbone on its first config.model.depth stages
(`family.encoder`: VGG's conv(-BN)-ReLU stages, each closed by a 2x2 max
pool that records its switches, uint8, 1 byte per pooled element, when the
operator needs them; a ResNet for operators without switches). Decoder:
the mirrored stages, each *upsample x2 -> conv-BN-ReLU* (as in SegNet and the
lecture: a parameter-free operator such as bed of nails is followed by learned
filters). No skip connections, so the operator alone carries the spatial
detail back up; a 1x1 score conv gives (N, H, W, num_classes) float32 logits.

The operator is any entry of `models.upsamplers.UPSAMPLERS` (one set for
every model): each decoder stage calls it as `up(x, switches, size)` with the
matching pool's switches and pre-pool size. The encoder records (sows) its
switches only when the operator needs them. Adding an operator is one class
plus one line in `UPSAMPLERS`; `experiments/upsampling_study.py` picks it up.
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.encoder_decoder import ConvBNReLU
from fcnjax.models.upsamplers import UPSAMPLERS


class UpsamplingDecoderNet(nn.Module):
  """Backbone (its first `depth` stages, no head) + skip-free decoder of x2 stages.

  backbone: an unbound module returning features by stride ('stride2' ...
  'stride{2^n}', and features['switches'] when the operator needs them:
  `family.encoder`). Decoder stage s (n .. 1): `upsample` x2 to the stride
  2^(s-1) map's size (the input's for s = 1) -> one conv-BN-ReLU with that
  map's channels (stage 1's: the stride-2 map's).
  """
  num_classes: int
  backbone: nn.Module
  upsample: str = "max_unpool"
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    if self.upsample not in UPSAMPLERS:
      raise ValueError(f"upsample={self.upsample!r}; valid: {tuple(UPSAMPLERS)}")
    _, h, w, _ = x.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, **kw)
    up = UPSAMPLERS[self.upsample]
    features = self.backbone(x.astype(self.dtype), train=train)
    switches = features.get("switches", {})
    depth = self.backbone.coarsest_stride.bit_length() - 1
    family.require(features, [f"stride{2 ** s}" for s in range(1, depth + 1)],
                   "the decoder model")
    x = features[f"stride{2 ** depth}"]
    for s in range(depth, 0, -1):
      finer = features[f"stride{2 ** (s - 1)}"] if s > 1 else features["stride2"]
      size = finer.shape[1:3] if s > 1 else (h, w)
      x = up(2, name=f"up{s}", **kw)(x, switches.get(f"stride{2 ** s}"), size)
      x = block(finer.shape[-1], name=f"dec{s}")(x, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(x)
    return score.astype(jnp.float32)


def _switches(model_config):
  return UPSAMPLERS[model_config["upsample"]].needs_switches


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  """The decoder net on `family.encoder` (config.model.backbone, depth), which
  records switches only when config.model.upsample needs them."""
  backbone = family.encoder(model_config, switches=_switches(model_config),
                            axis_name=axis_name, dtype=dtype)
  return UpsamplingDecoderNet(num_classes, backbone=backbone,
                              upsample=model_config["upsample"], axis_name=axis_name,
                              dtype=dtype)


def check(model_config, input_size=None):
  family.choice("upsample", model_config["upsample"], UPSAMPLERS, " for the decoder model")
  family.encoder_check(_switches)(model_config, input_size)


FAMILY = family.Family(from_config, ("upsample", "depth"), check)
