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

import jax.numpy as jnp


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


def require(features, keys, who):
  """ValueError unless the backbone's features hold every key `who` reads."""
  missing = [k for k in keys if k not in features]
  if missing:
    raise ValueError(f"the backbone returned {sorted(features)}; {who} needs {tuple(keys)} "
                     f"(missing {missing})")


def check_depth(backbone, depth, stages):
  """ValueError naming config.model.depth unless it is None or 1..stages."""
  if depth is not None and (not isinstance(depth, int) or not 1 <= depth <= stages):
    raise ValueError(f"config.model.depth={depth!r}: backbone {backbone!r} has {stages} "
                     f"stride-halving stages; use 1..{stages} (None: all)")


def backbone(model_config, *, head=True, switches=False, depth=None, axis_name=None,
             dtype=jnp.float32):
  """`BACKBONES[config.model.backbone]` on its first `depth` stages (None: all), with
  its head or not, recording its pools' switches when `switches` (ValueError naming
  what it cannot provide)."""
  from fcnjax.models.backbones import BACKBONES  # backbones imports this module
  return BACKBONES[model_config["backbone"]](model_config, axis_name=axis_name, dtype=dtype,
                                             depth=depth, head=head, switches=switches)


def encoder(model_config, *, switches, axis_name=None, dtype=jnp.float32):
  """An encoder-decoder's encoder: the backbone on config.model.depth stages, without
  its head, recording switches when `switches`."""
  return backbone(model_config, head=False, switches=switches, depth=model_config["depth"],
                  axis_name=axis_name, dtype=dtype)


def check_input_size(model_config, backbone, input_size=None):
  """ValueError naming config.data.crop_size when input_size x input_size images
  are smaller than the backbone's coarsest stride (switch pools floor-divide)."""
  need = backbone.coarsest_stride
  if input_size is not None and input_size < need:
    raise ValueError(f"config.data.crop_size={input_size}: config.model.name="
                     f"{model_config['name']!r} pools {need.bit_length() - 1} times "
                     f"(backbone {model_config['backbone']!r}, depth "
                     f"{model_config.get('depth')}) and needs at least {need}x{need} inputs")


def encoder_check(switches):
  """A `check` of an encoder-decoder family: the encoder it asks for can be
  built (switches(model_config): whether it must record them), and an
  input_size x input_size image passes all its pools."""
  def check(model_config, input_size=None):
    backbone = encoder(model_config, switches=switches(model_config))
    check_input_size(model_config, backbone, input_size)
  return check
