"""VGG backbones: VGG16 / VGG16-BN (torchvision layer order) and two CPU-sized nets.

One encoder for every family: FCN and U-Net read its features by stride
(fc7 as stride32); SegNet, DeconvNet and the decoder take it without the
fc6/fc7 head (`head=False`), on their first `depth` stages, with 2x2 pools
that record their switches (`switches=True`) when they unpool with them.

Parameter tree of VGG16 (the FCN's 'backbone' subtree is the same minus fc8):
  backbone/conv{stage}_{i}/{kernel,bias}  3x3 convs, kernel HWIO (features.N)
  backbone/fc6/{kernel,bias}   (7, 7, 512, 4096) conv  (classifier.0)
  backbone/fc7/{kernel,bias}   (1, 1, 4096, 4096) conv (classifier.3)
  fc8/{kernel,bias}            Dense (4096, classes)   (classifier.6)
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.ops.fc import FC_IMPLS
from fcnjax.ops.upsample import index_pool, max_pool, max_pool_with_switches

GEOMETRIES = ("same", "paper", "torchvision")


class VGGBackbone(nn.Module):
  """VGG feature extractor returning features by stride (the backbone protocol).

  Input (N, H, W, 3), NHWC; per stage s: stage_sizes[s-1] 3x3 convs (with
  bias; batch_norm: conv -> BatchNorm -> ReLU) of widths[s-1] channels, then
  a 2x2 max pool. Geometry:
    'same': convs SAME, ceil pooling, fc6 SAME: pool_k has ceil(H / 2^k) rows,
      so any input size works.
    'paper': the Caffe FCN reference: conv1_1 padding 100, ceil pooling, fc6 VALID.
    'torchvision': conv padding 1, floor pooling, fc6 VALID (ImageNet classifier).
  Returns {'stride2': pool1, 'stride4': pool2, ..., 'stride{2^n}': pool_n}
  for n stages, where head=True replaces the coarsest map by fc7 (after
  dropout): for VGG16 'stride32' is fc7. switches=True: floor pools that
  record their switches (uint8, the window offset of each maximum), returned
  as features['switches'] = {'stride2': (N, H/2, W/2, C1), ...} and sown as
  intermediates 'switches{s}' (what a model keeps for its decoder); the
  input then needs at least 2^n rows and columns. index_block (an IndexNet
  block factory, `models.modern_upsamplers.IndexBlock`): floor pools that
  pool index-weighted (`ops.upsample.index_pool`) by the block's encoder
  index, returning its decoder index as features['index'] = {'stride2':
  (N, H', W', 1 or C1), ...} (H' = 2 * (H // 2)), sown as 'index{s}'.
  full_resolution: also features['stride1'], stage 1's map before pool1
  (guidance at the output stride of the last x2 step).
  """
  stage_sizes: Sequence[int] = (2, 2, 3, 3, 3)
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  fc_width: int = 4096
  fc6_kernel: int = 7
  fc_impl: str = "matmul"  # fc6 / fc7 as 'matmul' (im2col, fast on CPU) or 'xla' (lax conv)
  geometry: str = "same"
  dropout_rate: float = 0.5
  batch_norm: bool = False  # conv -> BatchNorm -> ReLU ('small', 'vgg16_bn')
  head: bool = True  # fc6 / fc7 on the last pool
  switches: bool = False  # floor pools that record their switches
  index_block: Optional[Any] = None  # floor pools weighted by this block's index
  full_resolution: bool = False  # also return 'stride1' (stage 1 before its pool)
  axis_name: Optional[str] = None  # BatchNorm statistics averaged over this device axis
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def coarsest_stride(self):
    return 2 ** len(self.stage_sizes)

  def _check(self, x):
    if self.geometry not in GEOMETRIES:
      raise ValueError(f"geometry={self.geometry!r}; valid: {GEOMETRIES}")
    floor = "switch-recording" if self.switches else "index-weighted"
    if (self.switches or self.index_block) and self.geometry == "paper":
      raise ValueError(f"{floor} pools are floor mode; the 'paper' geometry pools in "
                       "ceil mode (use geometry='same')")
    n = self.coarsest_stride  # each side compared on its own: sizes may be symbolic
    if (self.switches or self.index_block) and (x.shape[1] < n or x.shape[2] < n):
      raise ValueError(f"input {x.shape[1]}x{x.shape[2]} smaller than the {n}x{n} the "
                       f"{len(self.stage_sizes)} {floor} pools need")

  def _pool(self, x, s, features, train):
    if self.index_block is not None:
      index_en, index_de = self.index_block(axis_name=self.axis_name, dtype=self.dtype,
                                            param_dtype=self.param_dtype,
                                            name=f"index_block{s}")(x, train=train)
      self.sow("intermediates", f"index{s}", index_de)
      features["index"][f"stride{2 ** s}"] = index_de
      h, w = index_en.shape[1:3]  # the floor windows' extent
      return index_pool(x[:, :h, :w], index_en.astype(x.dtype), 2)
    if not self.switches:
      return max_pool(x, 2, ceil_mode=self.geometry != "torchvision")
    x, switches = max_pool_with_switches(x)
    self.sow("intermediates", f"switches{s}", switches)
    features["switches"][f"stride{2 ** s}"] = switches
    return x

  @nn.compact
  def __call__(self, x, *, train=False):
    self._check(x)
    conv = functools.partial(nn.Conv, dtype=self.dtype, param_dtype=self.param_dtype)
    features = {"switches": {}} if self.switches else {}
    if self.index_block is not None:
      features["index"] = {}
    for s, (n, width) in enumerate(zip(self.stage_sizes, self.widths), start=1):
      for i in range(1, n + 1):
        pad = 100 if (self.geometry == "paper" and s == 1 and i == 1) else 1
        x = conv(width, (3, 3), padding=pad, name=f"conv{s}_{i}")(x)
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                           axis_name=self.axis_name if train else None,
                           param_dtype=self.param_dtype, name=f"bn{s}_{i}")(x)
        x = nn.relu(x)
      if s == 1 and self.full_resolution:
        features["stride1"] = x
      x = features[f"stride{2 ** s}"] = self._pool(x, s, features, train)
    if self.head:
      fc6_pad = "SAME" if self.geometry == "same" else "VALID"
      fc = functools.partial(conv, conv_general_dilated=FC_IMPLS[self.fc_impl])
      x = nn.relu(fc(self.fc_width, (self.fc6_kernel,) * 2, padding=fc6_pad, name="fc6")(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(fc(self.fc_width, (1, 1), name="fc7")(x))
      x = features[f"stride{self.coarsest_stride}"] = nn.Dropout(
          self.dropout_rate, deterministic=not train)(x)
    return features


# VGGBackbone sizes by backbone name: the one size table of every VGG-based model.
VGG_SIZES = {
    "vgg16": dict(stage_sizes=(2, 2, 3, 3, 3), widths=(64, 128, 256, 512, 512), fc_width=4096),
    "vgg16_bn": dict(stage_sizes=(2, 2, 3, 3, 3), widths=(64, 128, 256, 512, 512),
                     fc_width=4096, batch_norm=True),
    "small": dict(stage_sizes=(2, 2, 2, 2, 2), widths=(16, 32, 64, 96, 96), fc_width=192,
                  batch_norm=True),
    "tiny": dict(stage_sizes=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), fc_width=32),
}


class VGG16(nn.Module):
  """torchvision's vgg16 in classifier form: (N, 224, 224, 3) -> (N, classes).

  fc6 / fc7 are stored as convolutions (an FC on a 7x7x512 map == a 7x7 conv,
  an FC on a vector == a 1x1 conv), so the FCN backbone reuses the same
  parameters. Eval mode (train=False) equals torchvision `vgg16().eval()`.
  """
  num_classes: int = 1000
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    if x.shape[1:3] != (224, 224):
      raise ValueError(f"VGG16 classifier form takes 224x224 inputs, got "
                       f"{x.shape[1]}x{x.shape[2]}; use VGGBackbone for other sizes")
    x = VGGBackbone(geometry="torchvision", dropout_rate=self.dropout_rate,
                    dtype=self.dtype, param_dtype=self.param_dtype,
                    name="backbone")(x, train=train)["stride32"]
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                    name="fc8")(x.reshape(x.shape[0], -1))
