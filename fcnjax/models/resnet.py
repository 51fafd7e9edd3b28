"""ResNet backbones (He et al. 2016) in torchvision's layout: ResNet-18 and ResNet-50.

conv1 7x7/2 (pad 3) -> bn1 -> ReLU -> max pool 3x3/2 (pad 1) -> layer1..layer4;
layer2..4 halve the resolution in their first block, on the 3x3 conv (the
"v1.5" Bottleneck of torchvision), with a 1x1 conv + BN downsample shortcut.
Convs have no bias. With torch's explicit padding every stride-s map has
ceil(H / s) rows, as the backbone protocol's 'same' geometry asks.

Parameter tree (batch_stats mirrors the bn* entries with mean / var):
  conv1/kernel (7, 7, 3, 64), bn1/{scale, bias}
  layer{i}_{j}/conv{1,2[,3]}/kernel, bn{1,2[,3]}/{scale, bias}
  layer{i}_0/downsample_conv/kernel, downsample_bn/{scale, bias}   (where shapes change)
Names follow torchvision's state dict (layer1.0.conv1 -> layer1_0/conv1), so
`models.torch_weights.resnet_from_torch` is a renaming and a transpose.
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.vgg import VGG_SIZES

# torchvision's kaiming_normal_(mode='fan_out', nonlinearity='relu') for convs.
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

RESNET_SIZES = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), bottleneck=False),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), bottleneck=True),
}


def _pad(kernel):
  """torch's symmetric padding k // 2 on both spatial sides."""
  return ((kernel // 2, kernel // 2),) * 2


class ResidualBlock(nn.Module):
  """BasicBlock (3x3, 3x3; expansion 1) or Bottleneck (1x1, 3x3, 1x1; expansion 4).

  (N, H, W, C_in) -> (N, ceil(H/s), ceil(W/s), width * expansion); stride s on
  the 3x3 conv that comes first (basic) or second (bottleneck).
  """
  width: int
  stride: int = 1
  bottleneck: bool = False
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=CONV_INIT,
                             dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, axis_name=self.axis_name if train else None,
                             dtype=self.dtype)
    if self.bottleneck:  # (kernel, stride, out channels) per conv
      convs = [(1, 1, self.width), (3, self.stride, self.width), (1, 1, 4 * self.width)]
    else:
      convs = [(3, self.stride, self.width), (3, 1, self.width)]
    y = x
    for i, (k, s, c) in enumerate(convs, start=1):
      y = conv(c, (k, k), strides=s, padding=_pad(k), name=f"conv{i}")(y)
      y = norm(name=f"bn{i}")(y)
      if i < len(convs):
        y = nn.relu(y)
    out = convs[-1][2]
    if self.stride != 1 or x.shape[-1] != out:
      x = conv(out, (1, 1), strides=self.stride, padding=0, name="downsample_conv")(x)
      x = norm(name="downsample_bn")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet feature extractor: (N, H, W, 3) NHWC -> features by stride.

  Returns {'stride2': relu(bn1(conv1)), 'stride4': layer1, 'stride8': layer2,
  'stride16': layer3, 'stride32': layer4}, stride-s maps (N, ceil(H/s),
  ceil(W/s), C_s) with C_s = 64, 64e, 128e, 256e, 512e (e = 4 for Bottleneck).
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  bottleneck: bool = False
  depth: Optional[int] = None  # keep the first `depth` strides (stem = 1); None: all
  axis_name: Optional[str] = None  # BatchNorm statistics averaged over this device axis
  dtype: Any = jnp.float32

  @property
  def num_strides(self):
    """Stride-halving stages kept: the stem, then one per layer."""
    return self.depth or len(self.stage_sizes) + 1

  @property
  def coarsest_stride(self):
    return 2 ** self.num_strides

  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.Conv(64, (7, 7), strides=2, padding=_pad(7), use_bias=False,
                kernel_init=CONV_INIT, dtype=self.dtype, name="conv1")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     axis_name=self.axis_name if train else None, dtype=self.dtype,
                     name="bn1")(x)
    features = {"stride2": nn.relu(x)}
    x = nn.max_pool(features["stride2"], (3, 3), strides=(2, 2), padding=_pad(3))
    for i, n in enumerate(self.stage_sizes[:self.num_strides - 1]):  # the stem is stride 2
      for j in range(n):
        stride = 2 if (i > 0 and j == 0) else 1
        x = ResidualBlock(64 * 2 ** i, stride, self.bottleneck, self.axis_name,
                          self.dtype, name=f"layer{i + 1}_{j}")(x, train=train)
      features[f"stride{4 * 2 ** i}"] = x
    return features


def resnet(size, model_config, axis_name=None, dtype=jnp.float32, *, depth=None, head=True,
           switches=False, index_block=None, full_resolution=False):
  """ResNet of RESNET_SIZES[size] (no head to drop: `head` changes nothing); it has
  one geometry (torchvision's), no dropout, no 2x2 pools and no stride-1 map, so
  it refuses the VGG fields set otherwise, switches, index pools and guidance at
  stride 1, rather than ignore them."""
  del head
  if index_block is not None:
    raise ValueError(f"config.model.backbone={size!r} has no 2x2 pools to index (its one "
                     "max pool is 3x3 / stride 2): IndexNet needs a backbone with 2x2 "
                     "pools, one of the VGG sizes")
  if full_resolution:
    raise ValueError(f"config.model.backbone={size!r} has no stride-1 map (its stem "
                     "convolves with stride 2): a guided operator's last x2 step needs "
                     "the encoder's full-resolution map; use a VGG size")
  if switches:
    raise ValueError(f"config.model.backbone={size!r} records no pooling switches (its one "
                     "max pool is 3x3 / stride 2, overlapping): max-unpooling needs a "
                     f"backbone with 2x2 switch pools, one of {tuple(VGG_SIZES)}")
  geometry = model_config.get("geometry", "same")
  if geometry != "same":
    raise ValueError(f"config.model.geometry={geometry!r}: the {size} backbone has "
                     "torchvision's padding only; use geometry='same'")
  if model_config.get("dropout_rate", 0.0):
    raise ValueError(f"config.model.dropout_rate={model_config['dropout_rate']!r}: the "
                     f"{size} backbone has no dropout; leave it at 0.0")
  family.check_depth(size, depth, len(RESNET_SIZES[size]["stage_sizes"]) + 1)
  return ResNet(depth=depth, axis_name=axis_name, dtype=dtype, **RESNET_SIZES[size])
