"""An encoder-decoder in which the x2 upsampling operator is the only variable.

Encoder: `len(widths)` stages of conv-BN-ReLU blocks, each closed by a 2x2 max
pool that records its switches (uint8, 1 byte per pooled element). Decoder:
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
from fcnjax.models.encoder_decoder import ConvBNReLU, switch_encoder
from fcnjax.models.upsamplers import UPSAMPLERS


class UpsamplingDecoderNet(nn.Module):
  """Encoder with switch pools + skip-free decoder of x2 `upsample` stages.

  widths: channels per encoder stage (one pool each, so the input needs at
  least 2^len(widths) rows and columns); stage_sizes: conv-BN-ReLU blocks per
  encoder stage; one per decoder stage.
  """
  num_classes: int
  upsample: str = "max_unpool"
  widths: Sequence[int] = (16, 32, 64, 96)
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    if self.upsample not in UPSAMPLERS:
      raise ValueError(f"upsample={self.upsample!r}; valid: {tuple(UPSAMPLERS)}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = functools.partial(ConvBNReLU, axis_name=self.axis_name, **kw)
    up = UPSAMPLERS[self.upsample]
    x, pools = switch_encoder(self, x.astype(self.dtype), self.stage_sizes, self.widths,
                              train=train, keep_switches=up.needs_switches)
    for s in range(len(self.widths), 0, -1):
      switches, size = pools[s - 1]
      x = up(2, name=f"up{s}", **kw)(x, switches, size)
      out = self.widths[s - 2] if s > 1 else self.widths[0]
      x = block(out, name=f"dec{s}")(x, train=train)
    score = nn.Conv(self.num_classes, (1, 1), name="score", **kw)(x)
    return score.astype(jnp.float32)


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  """The decoder net on the first config.model.depth stages of `VGG_SIZES[backbone]`."""
  stage_sizes, widths = family.vgg_stages(model_config)
  return UpsamplingDecoderNet(num_classes, upsample=model_config["upsample"], widths=widths,
                              stage_sizes=stage_sizes, axis_name=axis_name, dtype=dtype)


def check(model_config, input_size=None):
  family.choice("upsample", model_config["upsample"], UPSAMPLERS, " for the decoder model")
  family.vgg_stage_check(model_config, input_size)


FAMILY = family.Family(from_config, ("upsample", "depth"), check)
