"""Flax models: backbones, FCN-32s/16s/8s, encoder-decoders, patch classifier.

`MODELS` maps `config.model.name` to a model family (`models.family.Family`):
a new family is one module plus one line here. `UPSAMPLERS` is the one
operator set (`models/operator.py`: what each operator needs and is).
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
from fcnjax.models.operator import Operator, Upsample
from fcnjax.models.upsamplers import (LECTURE_UPSAMPLERS, UPSAMPLERS, BedOfNailsUpsample, BilinearUpsample,
                                      MaxUnpool, NearestUpsample, TransposeConvUpsample, resolve)
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
# The config.model block's defaults (FCN-8s on the small BN VGG); None: the
# family's own default (`Family.defaults`), e.g. each family's operator.
MODEL_DEFAULTS = dict(name="fcn", variant="8s", backbone="small", upsample=None,
                      upsample_options={}, geometry="same", zero_init_score=True,
                      dropout_rate=0.0, depth=None, skips=False)


def family_of(model_config):
  """The Family of config.model.name (ValueError naming the field)."""
  name = model_config.get("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r}; valid: {tuple(MODELS)}")
  return MODELS[name]


def resolved(model_config):
  """A plain dict of config.model with MODEL_DEFAULTS for missing fields and the
  family's defaults for fields left None."""
  cfg = {**MODEL_DEFAULTS, **dict(model_config)}
  return family_of(cfg).resolved(cfg)


def check_model(model_config, input_size=None):
  """The family's own checks of its fields (for input_size x input_size inputs)."""
  cfg = resolved(model_config)
  if cfg.get("backbone") not in BACKBONES:
    raise ValueError(f"config.model.backbone={cfg.get('backbone')!r}; "
                     f"valid: {tuple(BACKBONES)}")
  family_of(cfg).check(cfg, input_size)


def build_model(model_config, num_classes, dtype=jnp.float32, axis_name=None):
  """The model of config.model: `MODELS[name].from_config(...)` after its checks.

  model_config: the config.model block (a ConfigDict or dict with name,
  backbone and the family's fields). axis_name: the device axis the train
  step runs under; BatchNorm layers average their batch statistics over it
  (synchronised BN), so a run's numbers do not depend on the device count.
  """
  cfg = resolved(model_config)
  check_model(cfg)
  return family_of(cfg).from_config(cfg, num_classes, dtype=dtype, axis_name=axis_name)
