"""The upsampling-operator protocol: what an operator needs and what it is.

Every operator is an `Upsample` subclass, called by every family alike:

    up = op(factor, padding=None, dtype=..., name=...)   # op: an `Operator`
    y = up(x, given=None, size=None)

x (N, h, w, C) -> y (N, h*f, w*f, C); `size` (H, W) crops or zero-pads the
result at the bottom/right to the matching pre-pool map's size. `given` is
exactly what the operator's class declares in `needs`, nothing else:

  'nothing'   None (nearest, bilinear, transpose conv, pixel shuffle, CARAFE, DySample);
  'switches'  the (N, h, w, C) uint8 switches of the max pool it inverts (max-unpool);
  'index'     the decoder index (N, H, W, C or 1) of the pool it inverts, whose
              encoder pool ran index-weighted with the same index block
              (IndexNet: the operator's `index_block` is built into the encoder);
  'guidance'  the encoder's feature map at the output stride (N, H, W, C_en),
              the full-resolution block before the first pool included (FADE, SAPA).

A family supplies it with `encoder_input(op, features, stride)` from the
backbone's features, and asks the backbone for it with `backbone_request(op)`.
Each class also declares its kind (`learned`, `dense`; `guided` is
needs == 'guidance'), which the studies read instead of hand-kept lists, and
its `options`: the dataclass fields `config.model.upsample_options` may set
(validated by `Operator.of`). An `Operator` is a class with its options,
resolved once when a model is built.
"""
import dataclasses
from typing import Any, ClassVar, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

NEEDS = ("nothing", "switches", "index", "guidance")
# The collection a learned operator sows what it predicted or learned into (kernels,
# gates, offsets; `self.sow(INTERNALS, name, value)`), for the studies' figure of
# what the operators learned. Not 'intermediates', whose leaves count as kept bytes.
INTERNALS = "internals"


def fit(x, size):
  """Zero-pads or crops (N, h, w, C) at the bottom/right to (N, *size, C)."""
  x = x[:, :size[0], :size[1]]
  return jnp.pad(x, ((0, 0), (0, size[0] - x.shape[1]), (0, size[1] - x.shape[2]), (0, 0)))


class Upsample(nn.Module):
  """Base of every operator: (x, given=None, size=None) -> x upsampled x`factor`.

  Subclasses implement `upsample(self, x, given, size)` and declare `needs`,
  `learned`, `dense` and `options` (class attributes).
  """
  factor: int
  padding: Optional[int] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  needs: ClassVar[str] = "nothing"
  learned: ClassVar[bool] = False
  dense: ClassVar[bool] = True  # False: most output values are zeros (bed of nails, unpooling)
  options: ClassVar[Tuple[str, ...]] = ()

  @nn.compact
  def __call__(self, x, given=None, size=None):
    if self.needs != "nothing" and given is None:
      raise ValueError(f"{type(self).__name__} needs {self.needs} "
                       f"({_WHAT[self.needs]}); none was given")
    y = self.upsample(x.astype(self.dtype), given, size)
    return y if size is None else fit(y, size)

  @classmethod
  def check_options(cls, options):
    """ValueError naming the option whose value cannot work (subclasses extend)."""
    del options


_WHAT = {"switches": "the switches of the max pool it inverts",
         "index": "the index of the index-weighted pool it inverts",
         "guidance": "the encoder's feature map at the output stride"}


@dataclasses.dataclass(frozen=True)
class Operator:
  """An operator class with its options: `op(factor, **module_kwargs)` builds it."""
  name: str
  module: type
  options: Tuple[Tuple[str, Any], ...] = ()

  @classmethod
  def of(cls, name, module, options=None):
    """The Operator `name` with `options` (a mapping) checked against the class."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(module.options))
    if unknown:
      raise ValueError(f"config.model.upsample_options: {unknown} not options of "
                       f"upsample={name!r}; its options: {module.options}")
    try:
      module.check_options({k: getattr(module, k) for k in module.options} | options)
    except ValueError as e:
      raise ValueError(f"config.model.upsample_options: upsample={name!r}: {e}") from None
    return cls(name, module, tuple(sorted(options.items())))

  def __call__(self, factor, **kwargs):
    return self.module(factor, **dict(self.options), **kwargs)

  @property
  def needs(self):
    return self.module.needs

  @property
  def guided(self):
    return self.module.needs == "guidance"

  @property
  def learned(self):
    return self.module.learned

  @property
  def dense(self):
    return self.module.dense

  @property
  def kind(self):
    """'learned'/'parameter-free', 'dense'/'sparse', 'guided'/'unguided'."""
    return (("learned" if self.learned else "parameter-free"),
            ("dense" if self.dense else "sparse"), ("guided" if self.guided else "unguided"))

  def option_values(self):
    """Every option's value: the class's (a registered variant's) defaults with
    this operator's options over them."""
    return {**{k: getattr(self.module, k) for k in self.module.options}, **dict(self.options)}

  def index_block(self):
    """The encoder's index block of an 'index' operator (an unbound-module factory)."""
    return self.module.index_block(self.option_values())


def backbone_request(op):
  """What a family asks of its backbone for operator `op`: switch pools, index
  pools (with the operator's index block) or the stride-1 map for guidance."""
  return dict(switches=op.needs == "switches",
              index_block=op.index_block() if op.needs == "index" else None,
              full_resolution=op.guided)


def encoder_input(op, features, stride):
  """What `op` needs to upsample from `stride` to stride // 2, from the backbone's
  features: None, the pool's switches, the pool's index, or the stride // 2 map."""
  if op.needs == "nothing":
    return None
  if op.needs == "guidance":
    key = f"stride{stride // 2}"
    where = features
  else:
    key, where = f"stride{stride}", features.get(op.needs, {})
  if key not in where:
    what = "features" if op.needs == "guidance" else f"features[{op.needs!r}]"
    raise ValueError(f"upsample={op.name!r} needs the backbone's {what} at {key!r} "
                     f"({_WHAT[op.needs]}); it returned {sorted(where)}")
  return where[key]
