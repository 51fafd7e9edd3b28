"""Fully convolutional networks: FCN-32s, FCN-16s, FCN-8s (Long et al. 2015).

backbone -> score_fr (1x1, C) -> upsample -> (skip fusion with score_pool4 /
score_pool3) -> upsample to the input size. Output logits (N, H, W, C) for an
(N, H, W, 3) input, exactly the input size, in both geometries:

* 'same': block-aligned maps (pool_k has ceil(H/2^k) rows); coarse scores are
  upsampled x2 and cropped top-left to the skip map, the final map to (H, W).
* 'paper': the Caffe reference (conv1_1 padding 100, ceil pooling, fc6 VALID,
  kernel-2f upscore layers without padding) and its crop offsets:
  32s: upscore 19 | 16s: score_pool4 5, upscore16 27 | 8s: score_pool4 5,
  score_pool3 9, upscore8 31.
"""
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models.heads import PAPER_UPSAMPLERS, UPSAMPLERS, ScoreHead
from fcnjax.models.vgg import VGGBackbone
from fcnjax.ops.crop import crop

VARIANTS = ("32s", "16s", "8s")
# Caffe crop offsets of the reference nets: (skip name or 'final', variant) -> offset.
PAPER_OFFSETS = {"32s": {"final": 19}, "16s": {"pool4": 5, "final": 27},
                 "8s": {"pool4": 5, "pool3": 9, "final": 31}}


class FCN(nn.Module):
  """FCN-32s/16s/8s over a backbone returning (features, endpoints)."""
  num_classes: int
  variant: str = "32s"
  backbone: Callable[..., nn.Module] = VGGBackbone
  upsample: str = "learned"
  geometry: str = "same"
  zero_init_score: bool = True
  dropout_rate: float = 0.5
  axis_name: Optional[str] = None  # the device axis BatchNorm layers average over
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _check(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"variant={self.variant!r}; valid: {VARIANTS}")
    if self.upsample not in UPSAMPLERS:
      raise ValueError(f"upsample={self.upsample!r}; valid: {tuple(UPSAMPLERS)}")
    if self.geometry not in ("same", "paper"):
      raise ValueError(f"geometry={self.geometry!r}; valid: ('same', 'paper')")
    if self.geometry == "paper" and self.upsample not in PAPER_UPSAMPLERS:
      raise ValueError(f"upsample={self.upsample!r} does not have the kernel-2f geometry "
                       f"the 'paper' crops assume; use one of {PAPER_UPSAMPLERS} or "
                       "geometry='same'")

  @nn.compact
  def __call__(self, x, *, train=False):
    self._check()
    n, h, w, _ = x.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    paper = self.geometry == "paper"
    features, endpoints = self.backbone(geometry=self.geometry,
                                        dropout_rate=self.dropout_rate,
                                        axis_name=self.axis_name, name="backbone",
                                        **kw)(x, train=train)
    score = ScoreHead(self.num_classes, self.zero_init_score, name="score_fr", **kw)(features)
    up = functools.partial(UPSAMPLERS[self.upsample], padding=0 if paper else None, **kw)
    skips = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}[self.variant]
    up_names = {"pool4": "upscore2", "pool3": "upscore_pool4"}
    for skip in skips:
      score = up(2, name=up_names[skip])(score)
      skip_score = ScoreHead(self.num_classes, self.zero_init_score, name=f"score_{skip}",
                             **kw)(endpoints[skip])
      if paper:  # crop the skip scores to the upsampled map (Caffe offsets)
        skip_score = crop(skip_score, PAPER_OFFSETS[self.variant][skip], score.shape[1:3])
      else:  # crop the upsampled map to the skip scores (both block-aligned)
        score = score[:, :skip_score.shape[1], :skip_score.shape[2]]
      score = score + skip_score
    factor = {"32s": 32, "16s": 16, "8s": 8}[self.variant]
    final_name = {"32s": "upscore", "16s": "upscore16", "8s": "upscore8"}[self.variant]
    score = up(factor, name=final_name)(score)
    offset = PAPER_OFFSETS[self.variant]["final"] if paper else 0
    return crop(score, offset, (h, w)).astype(jnp.float32)

