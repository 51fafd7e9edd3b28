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
      value cannot work (for input_size x input_size inputs, when given);
  defaults: the family's own defaults of the fields it reads (a config field
      left at None, e.g. config.model.upsample, takes the family's default).

A family builds its backbone with `backbones.build` (what its operator needs
from the encoder, `models/operator.py`) and resolves its operator once
(`upsamplers.resolve`) when it is built.
"""
import dataclasses
from typing import Any, Callable, Mapping, Tuple


def no_check(model_config, input_size=None):
  del model_config, input_size


@dataclasses.dataclass(frozen=True)
class Family:
  from_config: Callable
  fields: Tuple[str, ...] = ()
  check: Callable = no_check
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def resolved(self, model_config):
    """model_config (a mapping) with this family's defaults for fields left None."""
    cfg = dict(model_config)
    for k, v in self.defaults.items():
      if cfg.get(k) is None:
        cfg[k] = v
    return cfg


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


def check_input_size(model_config, backbone, input_size=None):
  """ValueError naming config.data.crop_size when input_size x input_size images
  are smaller than the backbone's coarsest stride (switch pools floor-divide)."""
  need = backbone.coarsest_stride
  if input_size is not None and input_size < need:
    raise ValueError(f"config.data.crop_size={input_size}: config.model.name="
                     f"{model_config['name']!r} pools {need.bit_length() - 1} times "
                     f"(backbone {model_config['backbone']!r}, depth "
                     f"{model_config.get('depth')}) and needs at least {need}x{need} inputs")
