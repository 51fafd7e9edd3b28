"""Backbone registry: {name: factory}, one line per backbone.

A factory `make(model_config, axis_name=None, dtype=jnp.float32, *, depth=None,
head=True, switches=False)` returns an unbound Flax module and reads only the
model-config fields it declares (the VGGs: `geometry`, `dropout_rate`). The
module is called as `backbone(x, train=...)` on (N, H, W, 3) NHWC images and
returns a dict of feature maps by stride, 'stride2', 'stride4', ...
(N, h_s, w_s, C_s), one per stride-halving stage: FCN-32s reads stride32,
FCN-16s also stride16, FCN-8s also stride8; U-Net, SegNet, DeconvNet and the
decoder every stride. In the 'same' geometry h_s = ceil(H / s) (as SAME
strided convs and ceil pooling give). The module's `coarsest_stride` is its
last key's s.

What an encoder-decoder asks for: depth (the first `depth` stages; None:
all), head=False (no classifier-derived layers such as VGG's fc6 / fc7 on
top), switches=True (2x2 max pools that record their switches, returned as
features['switches'] by the stride of the pool's output, for max-unpooling).
A backbone that cannot provide what is asked raises a ValueError naming it.
axis_name: the device axis BatchNorm layers average over in training;
dtype: the compute dtype (parameters stay float32).
"""
import functools

import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.resnet import RESNET_SIZES, resnet
from fcnjax.models.vgg import VGG_SIZES, VGGBackbone


def vgg(size, model_config, axis_name=None, dtype=jnp.float32, *, depth=None, head=True,
        switches=False):
  """VGGBackbone of VGG_SIZES[size] in the config's geometry and dropout rate."""
  sizes = dict(VGG_SIZES[size])
  family.check_depth(size, depth, len(sizes["stage_sizes"]))
  if depth is not None:
    sizes.update(stage_sizes=sizes["stage_sizes"][:depth], widths=sizes["widths"][:depth])
  return VGGBackbone(geometry=model_config.get("geometry", "same"),
                     dropout_rate=model_config.get("dropout_rate", 0.0), head=head,
                     switches=switches, axis_name=axis_name, dtype=dtype, **sizes)


BACKBONES = {
    **{name: functools.partial(vgg, name) for name in VGG_SIZES},  # vgg16, vgg16_bn, small, tiny
    **{name: functools.partial(resnet, name) for name in RESNET_SIZES},  # resnet18, resnet50
}
