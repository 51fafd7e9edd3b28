"""Fully convolutional networks: FCN-32s, FCN-16s, FCN-8s (Long et al. 2015).

backbone -> score_fr (1x1, C) on its stride32 features -> upsample -> (skip
fusion with score_pool4 / score_pool3 on its stride16 / stride8 features) ->
upsample to the input size. Output logits (N, H, W, C) for an (N, H, W, 3)
input, exactly the input size, in both geometries:

* 'same': block-aligned maps (pool_k has ceil(H/2^k) rows); coarse scores are
  upsampled x2 and cropped top-left to the skip map, the final map to (H, W).
* 'paper': the Caffe reference (conv1_1 padding 100, ceil pooling, fc6 VALID,
  kernel-2f upscore layers without padding) and its crop offsets:
  32s: upscore 19 | 16s: score_pool4 5, upscore16 27 | 8s: score_pool4 5,
  score_pool3 9, upscore8 31.

Max-unpooling ('same' geometry, a backbone with switch pools): each x2 step
inverts the pool it lines up with (the stride-32 -> 16 step pool5, the
stride-16 -> 8 step pool4) and the final x8 / x16 / x32 step is one x2 unpool
per pool it crosses (x8: pool3, pool2, pool1). The score maps have
num_classes channels, not the pool's, so a window's values go to the one
offset most of the pool's channels chose (`ops.upsample.shared_switches`).
Like bed of nails, this leaves the output sparse: no layer follows the
final unpools. IndexNet (holistic: one index map per pool) unpools the same
way by each pool's index. Guided operators (FADE, SAPA) are refused: the
final step outputs at stride 1, where the backbone has no map to guide it.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import backbones, family
from fcnjax.models.operator import backbone_request
from fcnjax.models.upsamplers import PAPER_UPSAMPLERS, resolve
from fcnjax.models.vgg import VGGBackbone
from fcnjax.ops.crop import crop
from fcnjax.ops.upsample import shared_switches

VARIANTS = ("32s", "16s", "8s")
# The backbone features each variant reads, coarsest first.
STRIDES = {"32s": ("stride32",), "16s": ("stride32", "stride16"),
           "8s": ("stride32", "stride16", "stride8")}
# Caffe crop offsets of the reference nets: (variant, skip stride or 'final') -> offset.
PAPER_OFFSETS = {"32s": {"final": 19}, "16s": {"stride16": 5, "final": 27},
                 "8s": {"stride16": 5, "stride8": 9, "final": 31}}
# Layer names of the reference nets (checkpoints and the converter rely on them).
SKIP_NAMES = {"stride16": ("upscore2", "score_pool4"), "stride8": ("upscore_pool4", "score_pool3")}
FINAL_NAMES = {"32s": "upscore", "16s": "upscore16", "8s": "upscore8"}


def ScoreHead(num_classes, zero_init=False, **kwargs):  # noqa: N802
  """1x1 convolution to class scores (params: kernel (1, 1, C_in, C), bias);
  zero_init as in the reference FCN's score layers."""
  init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
  return nn.Conv(num_classes, (1, 1), kernel_init=init, **kwargs)


class FCN(nn.Module):
  """FCN-32s/16s/8s over a backbone returning features by stride (models/backbones.py).

  backbone: an unbound module (its params live under 'backbone'); None: the
  VGG16 backbone in this geometry without dropout.
  """
  num_classes: int
  variant: str = "32s"
  backbone: Optional[nn.Module] = None
  upsample: Any = "learned"  # a registry name or a resolved operator.Operator
  geometry: str = "same"
  zero_init_score: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def op(self):
    return resolve(self.upsample)

  def _check(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"variant={self.variant!r}; valid: {VARIANTS}")
    op = self.op
    if self.geometry not in ("same", "paper"):
      raise ValueError(f"geometry={self.geometry!r}; valid: ('same', 'paper')")
    if self.geometry == "paper" and op.name not in PAPER_UPSAMPLERS:
      raise ValueError(f"upsample={op.name!r} does not have the kernel-2f geometry "
                       f"the 'paper' crops assume; use one of {PAPER_UPSAMPLERS} or "
                       "geometry='same'")
    if op.guided:
      raise ValueError(f"upsample={op.name!r} is guided by the encoder's map at its output "
                       "stride; FCN's final x8/x16/x32 step outputs at stride 1, where the "
                       "backbone has no map (use it in unet, decoder, segnet or deconvnet)")
    if op.needs == "index" and op.option_values()["block"] != "holistic":
      raise ValueError(f"upsample={op.name!r}: a depthwise index has the pool's channels, "
                       "FCN's score maps num_classes; use the holistic 'indexnet'")

  def _features(self, x, train):
    """The backbone's {stride: (N, h, w, C)} maps this variant reads."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    request = backbone_request(self.op)
    del request["full_resolution"]  # refused by _check
    backbone = self.backbone or VGGBackbone(geometry=self.geometry, dropout_rate=0.0,
                                            name="backbone", **request, **kw)
    features = backbone(x, train=train)
    family.require(features, STRIDES[self.variant], f"FCN-{self.variant}")
    if self._unpools:
      crossed = [f"stride{2 ** s}" for s in range(1, 6)]
      family.require(features.get(self.op.needs, {}), crossed, f"FCN with upsample="
                     f"{self.op.name!r} (the {self.op.needs} of the pools it inverts)")
    return features

  @property
  def _unpools(self):
    return self.op.needs in ("switches", "index")

  def _upsample(self, up, score, stride, factor, name, features, size):
    """score (at `stride`) x factor; a switch (index) operator unpools x2 through each
    pool crossed, coarsest first, by its switches shared over the class channels
    (by its one-channel holistic index)."""
    if not self._unpools:
      return up(factor, name=name)(score)
    steps = factor.bit_length() - 1
    for s in (stride >> i for i in range(steps)):
      finer = features[f"stride{s // 2}"].shape[1:3] if s > 2 else size
      step = name if steps == 1 else f"{name}_pool{s.bit_length() - 1}"
      given = features[self.op.needs][f"stride{s}"]
      if self.op.needs == "switches":
        given = shared_switches(given)
      score = up(2, name=step)(score, given, finer)
    return score

  @nn.compact
  def __call__(self, x, *, train=False):
    self._check()
    n, h, w, _ = x.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    paper = self.geometry == "paper"
    features = self._features(x, train)
    score = ScoreHead(self.num_classes, self.zero_init_score, name="score_fr",
                      **kw)(features["stride32"])
    up = functools.partial(self.op, padding=0 if paper else None, **kw)
    stride = 32
    for skip in STRIDES[self.variant][1:]:
      up_name, score_name = SKIP_NAMES[skip]
      score = self._upsample(up, score, stride, 2, up_name, features, None)
      stride //= 2
      self.sow("intermediates", f"kept_{skip}", features[skip])  # held for the skip
      skip_score = ScoreHead(self.num_classes, self.zero_init_score, name=score_name,
                             **kw)(features[skip])
      if paper:  # crop the skip scores to the upsampled map (Caffe offsets)
        skip_score = crop(skip_score, PAPER_OFFSETS[self.variant][skip], score.shape[1:3])
      else:  # crop the upsampled map to the skip scores (both block-aligned)
        score = score[:, :skip_score.shape[1], :skip_score.shape[2]]
      score = score + skip_score
    score = self._upsample(up, score, stride, stride, FINAL_NAMES[self.variant], features,
                           (h, w))
    offset = PAPER_OFFSETS[self.variant]["final"] if paper else 0
    return crop(score, offset, (h, w)).astype(jnp.float32)


FIELDS = ("variant", "upsample", "geometry", "zero_init_score", "dropout_rate",
          "upsample_options")


def _fields(model_config):
  """FCN's own constructor fields, the operator resolved with its options."""
  cfg = {k: model_config[k] for k in FIELDS[:4] if k in model_config}
  cfg["upsample"] = resolve(cfg.get("upsample", FCN.upsample),
                            model_config.get("upsample_options"))
  return cfg


def check(model_config, input_size=None):
  """The FCN fields' values (`FCN._check` at config time); with max-unpooling or
  IndexNet, the backbone's floor pools and an input that passes them all."""
  try:
    cfg = _fields(model_config)
    FCN(1, **cfg)._check()
  except ValueError as e:
    msg = str(e)
    raise ValueError(msg if msg.startswith("config.") else f"config.model.{msg}") from None
  backbone = backbones.build(model_config, cfg["upsample"])
  if cfg["upsample"].needs in ("switches", "index"):  # 'same' geometry otherwise: any size
    family.check_input_size(model_config, backbone, input_size)


def from_config(model_config, num_classes, *, dtype=jnp.float32, axis_name=None):
  """FCN over `backbones.build` (config.model.backbone; the backbone reads its own
  fields, e.g. geometry and dropout_rate; switch or index pools for the operators
  that unpool by them)."""
  cfg = _fields(model_config)
  return FCN(num_classes, backbone=backbones.build(model_config, cfg["upsample"],
                                                   axis_name=axis_name, dtype=dtype),
             dtype=dtype, **cfg)


FAMILY = family.Family(from_config, FIELDS, check, defaults={"upsample": "learned"})
