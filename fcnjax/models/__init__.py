"""Flax models: backbones, FCN-32s/16s/8s, encoder-decoders, patch classifier."""
import jax.numpy as jnp

from fcnjax.models.backbones import BACKBONES
from fcnjax.models.decoder import DECODER_SIZES, DECODER_UPSAMPLERS, UpsamplingDecoderNet
from fcnjax.models.encoder_decoder import DeconvNet, SegNet
from fcnjax.models.fcn import FCN, ScoreHead
from fcnjax.models.patch_classifier import (ConvolutionalPatchClassifier, PatchClassifier,
                                            convolutionalize, extract_patches)
from fcnjax.models.upsamplers import (UPSAMPLERS, BedOfNailsUpsample, BilinearUpsample,
                                      NearestUpsample, TransposeConvUpsample)
from fcnjax.models.vgg import VGG16, VGG_SIZES, VGGBackbone

MODELS = {"fcn": FCN, "segnet": SegNet, "deconvnet": DeconvNet,
          "decoder": UpsamplingDecoderNet}
FCN_FIELDS = ("variant", "upsample", "geometry", "zero_init_score")


def _choice(field, value, valid, what=""):
  if value not in valid:
    raise ValueError(f"config.model.{field}={value!r}; valid{what}: {tuple(valid)}")


def _encoder_decoder(name, backbone, num_classes, **kw):
  """SegNet / DeconvNet with the VGG encoder sizes of `backbone`."""
  _choice("backbone", backbone, VGG_SIZES, f" for {name} (it builds its own VGG encoder)")
  sizes = {k: VGG_SIZES[backbone][k] for k in ("stage_sizes", "widths")}
  if name == "deconvnet" and backbone != "vgg16":
    sizes["fc_width"] = 2 * sizes["widths"][-1]
  return MODELS[name](num_classes, **sizes, **kw)


def build_model(model_config, num_classes, dtype=jnp.float32, axis_name=None):
  """A model from a config: name, backbone and the fields of that model.

  axis_name: the device axis the train step runs under; BatchNorm layers
  average their batch statistics over it (synchronised BN), so a run's
  numbers do not depend on the device count.
  """
  cfg = dict(model_config)
  name, backbone = cfg.pop("name", "fcn"), cfg.pop("backbone", "vgg16")
  _choice("name", name, MODELS)
  _choice("backbone", backbone, BACKBONES)
  kw = dict(axis_name=axis_name, dtype=dtype)
  if name == "fcn":
    _choice("upsample", cfg.get("upsample", "learned"), UPSAMPLERS)
    fields = {k: v for k, v in cfg.items() if k in FCN_FIELDS}
    return FCN(num_classes, backbone=BACKBONES[backbone](cfg, **kw), dtype=dtype, **fields)
  if name == "decoder":
    upsample = cfg.get("upsample", "max_unpool")
    _choice("upsample", upsample, DECODER_UPSAMPLERS, " for the decoder model")
    _choice("backbone", backbone, DECODER_SIZES,
            " for the decoder model (it builds its own encoder)")
    widths, convs = DECODER_SIZES[backbone]
    return UpsamplingDecoderNet(num_classes, upsample=upsample, widths=widths,
                                convs_per_stage=convs, **kw)
  return _encoder_decoder(name, backbone, num_classes, **kw)
