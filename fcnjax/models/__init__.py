"""Flax models: backbones, FCN-32s/16s/8s, encoder-decoders, patch classifier.

`MODELS` maps `config.model.name` to a model family (`models.family.Family`):
a new family is one module plus one line here.
"""
import jax.numpy as jnp

from fcnjax.models import decoder, encoder_decoder, fcn, unet
from fcnjax.models.backbones import BACKBONES
from fcnjax.models.decoder import UpsamplingDecoderNet
from fcnjax.models.encoder_decoder import DeconvNet, SegNet
from fcnjax.models.family import Family
from fcnjax.models.fcn import FCN, ScoreHead
from fcnjax.models.unet import UNet
from fcnjax.models.patch_classifier import (ConvolutionalPatchClassifier, PatchClassifier,
                                            convolutionalize, extract_patches)
from fcnjax.models.upsamplers import (UPSAMPLERS, BedOfNailsUpsample, BilinearUpsample,
                                      MaxUnpool, NearestUpsample, TransposeConvUpsample)
from fcnjax.models.vgg import VGG16, VGG_SIZES, VGGBackbone

MODELS = {
    "fcn": fcn.FAMILY,
    "segnet": encoder_decoder.SEGNET,
    "deconvnet": encoder_decoder.DECONVNET,
    "decoder": decoder.FAMILY,
    "unet": unet.FAMILY,
}
# Every config.model field some family reads (besides name and backbone).
MODEL_FIELDS = tuple(dict.fromkeys(f for fam in MODELS.values() for f in fam.fields))


def family_of(model_config):
  """The Family of config.model.name (ValueError naming the field)."""
  name = model_config.get("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r}; valid: {tuple(MODELS)}")
  return MODELS[name]


def check_model(model_config, input_size=None):
  """The family's own checks of its fields (for input_size x input_size inputs)."""
  if model_config.get("backbone") not in BACKBONES:
    raise ValueError(f"config.model.backbone={model_config.get('backbone')!r}; "
                     f"valid: {tuple(BACKBONES)}")
  family_of(model_config).check(model_config, input_size)


def build_model(model_config, num_classes, dtype=jnp.float32, axis_name=None):
  """The model of config.model: `MODELS[name].from_config(...)` after its checks.

  model_config: the config.model block (a ConfigDict or dict with name,
  backbone and the family's fields). axis_name: the device axis the train
  step runs under; BatchNorm layers average their batch statistics over it
  (synchronised BN), so a run's numbers do not depend on the device count.
  """
  from fcnjax import config as config_lib
  cfg = {**config_lib.default_config().model.to_dict(), **dict(model_config)}
  check_model(cfg)
  return family_of(cfg).from_config(cfg, num_classes, dtype=dtype, axis_name=axis_name)
