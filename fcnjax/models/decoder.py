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
every model): each decoder stage calls it as `up(x, given, size)` with what
it declares it needs (`models/operator.py`: the matching pool's switches or
index, or the encoder's map at the output stride) and the pre-pool size. The
encoder provides (and sows) only that. With `skips` (the studies' guided
context) every stage also concatenates the encoder's map at its output
stride after the x2 step, in every arm alike.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import backbones, family
from fcnjax.models.encoder_decoder import ConvBNReLU
from fcnjax.models.operator import encoder_input
from fcnjax.models.upsamplers import resolve


class UpsamplingDecoderNet(nn.Module):
  """Backbone (its first `depth` stages, no head) + decoder of x2 stages.

  backbone: an unbound module returning features by stride ('stride2' ...
  'stride{2^n}', and what the operator needs: `backbones.encoder`). Decoder
  stage s (n .. 1): `upsample` x2 to the stride 2^(s-1) map's size (the
  input's for s = 1), given what it declares (`operator.encoder_input`) ->
  with skips, the encoder's stride 2^(s-1) map concatenated (stage 1: the
  stride-1 map, where the backbone returns it) -> one conv-BN-ReLU with that
  map's channels (stage 1's: the stride-2 map's). upsample: a registry name
  or a resolved `operator.Operator`.
  """
  num_classes: int
  backbone: nn.Module
  upsample: Any = "max_unpool"
  skips: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    op = resolve(self.upsample)
    _, h, w, _ = x.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, **kw)
    features = self.backbone(x.astype(self.dtype), train=train)
    depth = self.backbone.coarsest_stride.bit_length() - 1
    family.require(features, [f"stride{2 ** s}" for s in range(1, depth + 1)],
                   "the decoder model")
    x = features[f"stride{2 ** depth}"]
    for s in range(depth, 0, -1):
      finer = features[f"stride{2 ** (s - 1)}"] if s > 1 else features["stride2"]
      size = finer.shape[1:3] if s > 1 else (h, w)
      x = op(2, name=f"up{s}", **kw)(x, encoder_input(op, features, 2 ** s), size)
      skip = features.get(f"stride{2 ** (s - 1)}") if self.skips else None
      if skip is not None:
        x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
      x = block(finer.shape[-1], name=f"dec{s}")(x, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(x)
    return score.astype(jnp.float32)


def _encoder(model_config, axis_name=None, dtype=jnp.float32):
  """The operator and the encoder providing what it needs (with skips, the stride-1 map)."""
  op = resolve(model_config["upsample"], model_config.get("upsample_options"))
  return op, backbones.encoder(model_config, op, full_resolution=bool(model_config.get("skips")),
                               axis_name=axis_name, dtype=dtype)


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  """The decoder net on `backbones.encoder` (config.model.backbone, depth), which
  provides what config.model.upsample needs."""
  op, backbone = _encoder(model_config, axis_name, dtype)
  return UpsamplingDecoderNet(num_classes, backbone=backbone, upsample=op,
                              skips=bool(model_config.get("skips")), axis_name=axis_name,
                              dtype=dtype)


def check(model_config, input_size=None):
  _, backbone = _encoder(model_config)
  family.check_input_size(model_config, backbone, input_size)


FAMILY = family.Family(from_config, ("upsample", "upsample_options", "depth", "skips"), check,
                       defaults={"upsample": "max_unpool"})
