"""Start-up checks of a training config: one ValueError naming the field and its valid range.

`check_fields(config)` needs no dataset and compiles nothing; it runs before
a workdir is touched, so a bad value never costs a checkpoint.
"""
import math

import jax
import jax.numpy as jnp

from fcnjax import configs as config_lib
from fcnjax import models
from fcnjax.train import losses, optim, parallel

class ConfigError(ValueError):
  """A config field out of its valid range; the entry points print the message alone."""


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CLASS_WEIGHTINGS = ("none", "median_frequency")
def _choice(name, value, valid):
  if value not in valid:
    raise ConfigError(f"config.{name}={value!r}; valid: {tuple(valid)}")


def _at_least(name, value, low, kind=int):
  if not isinstance(value, kind) or isinstance(value, bool) or value < low:
    raise ConfigError(f"config.{name}={value!r}: must be {kind.__name__} >= {low}")


def _check_numbers(config):
  for name in ("num_train_steps", "batch_size", "eval_batch_size", "log_every_steps",
               "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
               "boundary_width"):
    _at_least(name, config[name], 1)
  _at_least("data.crop_size", config.data.crop_size, 1)
  for name in ("num_threads", "num_workers", "prefetch"):
    _at_least(f"data.{name}", config.data.get(name) or 0, 0)
  for name in ("eval_size", "eval_bucket"):
    if config.data.get(name) is not None:
      _at_least(f"data.{name}", config.data[name], 1)
  _at_least("num_devices", config.get("num_devices") or 0, 0)
  scale = config.data.scale_range
  if (len(scale) != 2 or not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scale)
      or not 0 < scale[0] <= scale[1]):
    raise ConfigError(f"config.data.scale_range={tuple(scale)!r}: must be (low, high) "
                     "with 0 < low <= high")
  opt = config.optimizer
  _choice("optimizer.name", opt.name, optim.OPTIMIZERS)
  _choice("optimizer.schedule", opt.schedule, optim.SCHEDULES)
  if not (isinstance(opt.learning_rate, (int, float)) and opt.learning_rate > 0
          and math.isfinite(opt.learning_rate)):
    raise ConfigError(f"config.optimizer.learning_rate={opt.learning_rate!r}: must be > 0")
  for name in ("warmup_steps", "step_every"):
    _at_least(f"optimizer.{name}", opt.get(name, 0), 0)
  if opt.warmup_steps >= config.num_train_steps:
    raise ConfigError(f"config.optimizer.warmup_steps={opt.warmup_steps}: must be below "
                     f"config.num_train_steps={config.num_train_steps}")
  for name in ("momentum", "weight_decay", "grad_clip"):
    if not opt.get(name, 0) >= 0:
      raise ConfigError(f"config.optimizer.{name}={opt.get(name)!r}: must be >= 0")
  if not 0 <= config.model.get("dropout_rate", 0.0) < 1:
    raise ConfigError(f"config.model.dropout_rate={config.model.dropout_rate!r}: "
                     "must be in [0, 1)")


def _check_model(config):
  """The model family's own checks, and no field it ignores changed from its default."""
  model, defaults = config.model, config_lib.default_config().model
  try:
    family = models.family_of(model)
    models.check_model(model, config.data.crop_size)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  ignored = {k: defaults[k] for k in models.MODEL_FIELDS
             if k not in family.fields and k in defaults}
  changed = [f"model.{k}={model[k]!r}" for k, v in ignored.items() if k in model and model[k] != v]
  if changed:
    raise ConfigError(f"config.model.name={model.name!r} ignores {', '.join(changed)}: "
                      f"leave {sorted(ignored)} at their defaults "
                      f"{ {k: ignored[k] for k in sorted(ignored)} }")


def _check_loss(config):
  """config.loss.name parses; focal_gamma >= 0; class weights only with a term that reads them."""
  loss = config.get("loss") or {}
  name = loss.get("name", "ce")
  try:
    terms = [t for _, t in losses.parse(name)]
  except ValueError as e:
    raise ConfigError(f"config.loss.name={name!r}: {e}") from None
  gamma = loss.get("focal_gamma", 2.0)
  if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
    raise ConfigError(f"config.loss.focal_gamma={gamma!r}: must be >= 0")
  weighting = config.get("class_weighting", "none")
  if weighting != "none" and not set(terms) & set(losses.PIXEL_TERMS):
    raise ConfigError(f"config.class_weighting={weighting!r} weights the terms "
                      f"{losses.PIXEL_TERMS}, and config.loss.name={name!r} has none")


def check_fields(config):
  """Every field a run reads, before anything is written; ValueError naming the field."""
  _choice("dtype", config.dtype, DTYPES)
  _choice("loss_reduction", config.loss_reduction, losses.REDUCTIONS)
  _choice("class_weighting", config.get("class_weighting", "none"), CLASS_WEIGHTINGS)
  _check_loss(config)
  _choice("parallel", config.parallel, parallel.DRIVERS)
  _check_numbers(config)
  _check_model(config)
  devices = config.get("num_devices") or jax.device_count()
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % devices:
      raise ConfigError(f"config.{name}={config[name]} is not divisible by the "
                       f"{devices} devices in use")
