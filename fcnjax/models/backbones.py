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
features['switches'] by the stride of the pool's output, for max-unpooling),
index_block=<an IndexNet block factory> (pools weighted by the block's index,
its decoder index returned as features['index']), full_resolution=True
(also 'stride1', the map before the first pool: guidance for FADE / SAPA).
A factory takes these two keywords only when it can provide them.
A backbone that cannot provide what is asked raises a ValueError naming it.
axis_name: the device axis BatchNorm layers average over in training;
dtype: the compute dtype (parameters stay float32).
"""
import functools

import jax.numpy as jnp

from fcnjax.models import family
from fcnjax.models.operator import backbone_request
from fcnjax.models.resnet import RESNET_SIZES, resnet
from fcnjax.models.vgg import VGG_SIZES, VGGBackbone


def vgg(size, model_config, axis_name=None, dtype=jnp.float32, *, depth=None, head=True,
        switches=False, index_block=None, full_resolution=False):
  """VGGBackbone of VGG_SIZES[size] in the config's geometry and dropout rate."""
  sizes = dict(VGG_SIZES[size])
  family.check_depth(size, depth, len(sizes["stage_sizes"]))
  if depth is not None:
    sizes.update(stage_sizes=sizes["stage_sizes"][:depth], widths=sizes["widths"][:depth])
  return VGGBackbone(geometry=model_config.get("geometry", "same"),
                     dropout_rate=model_config.get("dropout_rate", 0.0), head=head,
                     switches=switches, index_block=index_block,
                     full_resolution=full_resolution, axis_name=axis_name, dtype=dtype, **sizes)


BACKBONES = {
    **{name: functools.partial(vgg, name) for name in VGG_SIZES},  # vgg16, vgg16_bn, small, tiny
    **{name: functools.partial(resnet, name) for name in RESNET_SIZES},  # resnet18, resnet50
}


def build(model_config, op=None, *, head=True, depth=None, full_resolution=False,
          axis_name=None, dtype=jnp.float32):
  """`BACKBONES[config.model.backbone]` on its first `depth` stages (None: all), with
  its head or not, providing what operator `op` needs from the encoder (switch
  pools, index pools, the stride-1 map; `operator.backbone_request`) and the
  stride-1 map when `full_resolution`: ValueError naming what it cannot provide."""
  request = backbone_request(op) if op is not None else {}
  request = {k: v for k, v in request.items() if v}
  if full_resolution:
    request["full_resolution"] = True
  return BACKBONES[model_config["backbone"]](model_config, axis_name=axis_name, dtype=dtype,
                                             depth=depth, head=head, **request)


def encoder(model_config, op=None, *, full_resolution=False, axis_name=None,
            dtype=jnp.float32):
  """An encoder-decoder's encoder: the backbone on config.model.depth stages, without
  its head, providing what `op` needs."""
  return build(model_config, op, head=False, depth=model_config["depth"],
               full_resolution=full_resolution, axis_name=axis_name, dtype=dtype)
