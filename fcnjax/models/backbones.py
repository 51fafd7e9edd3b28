"""Backbone registry: {name: factory}, one line per backbone.

A factory `make(model_config, axis_name=None, dtype=jnp.float32)` returns an
unbound Flax module and reads only the model-config fields it declares (the
VGGs: `geometry`, `dropout_rate`). The module is called as
`backbone(x, train=...)` on (N, H, W, 3) NHWC images and returns a dict of
feature maps by stride, at least 'stride8', 'stride16', 'stride32' (N, h_s,
w_s, C_s), and any finer ones it has ('stride2', 'stride4'): FCN-32s reads
stride32, FCN-16s also stride16, FCN-8s also stride8; U-Net every stride.
In the 'same' geometry h_s = ceil(H / s) (as SAME strided convs and ceil
pooling give). axis_name: the device axis BatchNorm layers average over in
training; dtype: the compute dtype (parameters stay float32).
"""
import functools

import jax.numpy as jnp

from fcnjax.models.resnet import RESNET_SIZES, resnet
from fcnjax.models.vgg import VGG_SIZES, VGGBackbone

STRIDES = ("stride8", "stride16", "stride32")


def vgg(size, model_config, axis_name=None, dtype=jnp.float32):
  """VGGBackbone of VGG_SIZES[size] in the config's geometry and dropout rate."""
  return VGGBackbone(geometry=model_config.get("geometry", "same"),
                     dropout_rate=model_config.get("dropout_rate", 0.0),
                     axis_name=axis_name, dtype=dtype, **VGG_SIZES[size])


BACKBONES = {
    "vgg16": functools.partial(vgg, "vgg16"),
    "small": functools.partial(vgg, "small"),
    "tiny": functools.partial(vgg, "tiny"),
    **{name: functools.partial(resnet, name) for name in RESNET_SIZES},  # resnet18, resnet50
}
