"""The model-family protocol: how a `config.model` block becomes a Flax module.

A family module (fcn.py, decoder.py, encoder_decoder.py, unet.py, ...)
exports a `Family`; `models.MODELS` maps `config.model.name` to it, so a new
family is one module plus one line there, and validation, training and the
studies need no knowledge of it:

  from_config(model_config, num_classes, *, dtype, axis_name) -> unbound module
      (NHWC images in, (N, H, W, num_classes) float32 logits out);
  fields: the `config.model` fields it reads besides `name` and `backbone`
      (a field it does not read must stay at its default: a changed value is
      refused, not silently ignored);
  check(model_config, input_size=None): ValueError naming the field when a
      value cannot work (for input_size x input_size inputs, when given).
"""
import dataclasses
from typing import Callable, Tuple


def no_check(model_config, input_size=None):
  del model_config, input_size


@dataclasses.dataclass(frozen=True)
class Family:
  from_config: Callable
  fields: Tuple[str, ...] = ()
  check: Callable = no_check


def choice(field, value, valid, what=""):
  """ValueError naming config.model.<field> unless value is one of valid."""
  if value not in valid:
    raise ValueError(f"config.model.{field}={value!r}; valid{what}: {tuple(valid)}")


def min_input_check(pools):
  """A `check` refusing inputs smaller than 2**pools(model_config) pixels a side."""
  def check(model_config, input_size=None):
    if input_size is None:
      return
    need = 2 ** pools(model_config)
    if input_size < need:
      raise ValueError(f"config.data.crop_size={input_size}: config.model.name="
                       f"{model_config['name']!r} pools {pools(model_config)} times and "
                       f"needs at least {need}x{need} inputs")
  return check


def vgg_stages(model_config):
  """(stage_sizes, widths) of `VGG_SIZES[backbone]`, the first `depth` stages
  (config.model.depth; None: all): the one size table of the networks that
  build a VGG-style switch-pool encoder (decoder, SegNet, DeconvNet)."""
  from fcnjax.models.vgg import VGG_SIZES
  name, backbone, depth = model_config["name"], model_config["backbone"], model_config["depth"]
  choice("backbone", backbone, VGG_SIZES, f" for {name} (a VGG-style switch-pool encoder)")
  sizes = VGG_SIZES[backbone]
  stages = len(sizes["stage_sizes"])
  depth = stages if depth is None else depth
  if not isinstance(depth, int) or not 1 <= depth <= stages:
    raise ValueError(f"config.model.depth={model_config['depth']!r}: {backbone!r} has "
                     f"{stages} pooling stages; use 1..{stages} (None: all)")
  return tuple(sizes["stage_sizes"][:depth]), tuple(sizes["widths"][:depth])


def vgg_stage_check(model_config, input_size=None):
  """`check` of a switch-pool encoder family: backbone, depth, input size."""
  stages, _ = vgg_stages(model_config)
  min_input_check(lambda c: len(stages))(model_config, input_size)
