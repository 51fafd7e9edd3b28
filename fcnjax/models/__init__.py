"""Flax models: VGG backbones, FCN-32s/16s/8s, encoder-decoders, patch classifier."""
import jax.numpy as jnp

from fcnjax.models.decoder import DECODER_SIZES, DECODER_UPSAMPLERS, UpsamplingDecoderNet
from fcnjax.models.encoder_decoder import DeconvNet, SegNet
from fcnjax.models.fcn import FCN
from fcnjax.models.heads import (UPSAMPLERS, BedOfNailsUpsample, BilinearUpsample,
                                 NearestUpsample, ScoreHead, TransposeConvUpsample)
from fcnjax.models.patch_classifier import (ConvolutionalPatchClassifier, PatchClassifier,
                                            convolutionalize, extract_patches)
from fcnjax.models.vgg import VGG16, SmallVGGBackbone, TinyVGGBackbone, VGGBackbone

BACKBONES = {"vgg16": VGGBackbone, "small": SmallVGGBackbone, "tiny": TinyVGGBackbone}
MODELS = {"fcn": FCN, "segnet": SegNet, "deconvnet": DeconvNet,
          "decoder": UpsamplingDecoderNet}
# Encoder-decoder sizes per backbone name (VGG16 layout, or tiny for tests).
ENCODER_DECODER = {"vgg16": {}, "small": dict(stage_sizes=(2, 2, 2, 2, 2),
                                             widths=(16, 32, 64, 96, 96)),
                   "tiny": dict(stage_sizes=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32))}
FCN_FIELDS = ("variant", "upsample", "geometry", "zero_init_score", "dropout_rate")


def build_model(model_config, num_classes, dtype=jnp.float32, axis_name=None):
  """A model from a config: name, backbone and the fields of that model.

  axis_name: the device axis the train step runs under; BatchNorm layers
  average their batch statistics over it (synchronised BN), so a run's
  numbers do not depend on the device count.
  """
  cfg = dict(model_config)
  name = cfg.pop("name", "fcn")
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r}; valid: {tuple(MODELS)}")
  backbone = cfg.pop("backbone", "vgg16")
  if backbone not in BACKBONES:
    raise ValueError(f"config.model.backbone={backbone!r}; valid: {tuple(BACKBONES)}")
  if name == "fcn":
    upsample = cfg.get("upsample", "learned")
    if upsample not in UPSAMPLERS:
      raise ValueError(f"config.model.upsample={upsample!r}; valid: {tuple(UPSAMPLERS)}")
    kwargs = {k: v for k, v in cfg.items() if k in FCN_FIELDS}
    return FCN(num_classes, backbone=BACKBONES[backbone], axis_name=axis_name, dtype=dtype,
               **kwargs)
  if name == "decoder":
    upsample = cfg.get("upsample", "max_unpool")
    if upsample not in DECODER_UPSAMPLERS:
      raise ValueError(f"config.model.upsample={upsample!r}; valid for the decoder "
                       f"model: {tuple(DECODER_UPSAMPLERS)}")
    widths, convs = DECODER_SIZES[backbone]
    return UpsamplingDecoderNet(num_classes, upsample=upsample, widths=widths,
                                convs_per_stage=convs, axis_name=axis_name, dtype=dtype)
  sizes = dict(ENCODER_DECODER[backbone])
  if name == "deconvnet" and backbone != "vgg16":
    sizes["fc_width"] = 2 * sizes["widths"][-1]
  return MODELS[name](num_classes, axis_name=axis_name, dtype=dtype, **sizes)
