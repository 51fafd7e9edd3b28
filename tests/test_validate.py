"""Start-up validation: every default passes, each bad value names its field."""
import pytest

from fcnjax import configs as config_lib
from fcnjax.studies import experiment
from fcnjax.train import optim
from fcnjax.train import validate


def _config(**fields):
  return experiment.with_fields(config_lib.default_config(), fields)


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def test_every_default_field_is_valid_and_known():
  config = config_lib.default_config()
  validate.check_fields(config)
  fields = dict(_leaves(config))
  assert len(fields) > 35  # the walk reaches the nested fields
  for name in ("optimizer.schedule", "data.scale_range", "model.dropout_rate", "keep_checkpoints"):
    assert name in fields


@pytest.mark.parametrize("field, value", [
    ("num_train_steps", -5), ("num_train_steps", 0), ("eval_every_steps", 0),
    ("log_every_steps", 0), ("checkpoint_every_steps", 0), ("keep_checkpoints", 0),
    ("batch_size", 0), ("eval_batch_size", -8), ("boundary_width", 0),
    ("data.crop_size", 0), ("data.num_threads", -1), ("data.num_workers", -3),
    ("data.prefetch", -2), ("data.eval_bucket", 0), ("data.eval_size", -32), ("data.scale_range", (2.0,)), ("data.scale_range", (1.5, 0.5)),
    ("data.scale_range", (0.0, 1.0)), ("optimizer.learning_rate", 0.0),
    ("optimizer.learning_rate", float("nan")), ("optimizer.warmup_steps", -1),
    ("optimizer.warmup_steps", 1500), ("optimizer.name", "lbfgs"),
    ("optimizer.schedule", "cyclic"), ("optimizer.step_every", -1),
    ("optimizer.weight_decay", -1e-4), ("optimizer.grad_clip", -1.0),
    ("model.dropout_rate", 1.0), ("model.name", "transformer"), ("model.backbone", "resnet"),
    ("dtype", "float16"), ("loss_reduction", "max"), ("class_weighting", "inverse"),
    ("parallel", "pjit"), ("num_devices", -1),
])
def test_bad_values_name_their_field(field, value):
  with pytest.raises(ValueError, match=f"config.{field}="):
    validate.check_fields(_config(**{field: value}))


@pytest.mark.parametrize("name", ["segnet", "deconvnet", "decoder"])
@pytest.mark.parametrize("field, value", [("variant", "32s"), ("geometry", "paper"),
                                          ("zero_init_score", False), ("dropout_rate", 0.5)])
def test_fields_a_model_ignores_are_refused(name, field, value):
  config = _config(**{"model.name": name, "data.crop_size": 64})
  validate.check_fields(config)
  with pytest.raises(ValueError, match=f"ignores model.{field}="):
    validate.check_fields(experiment.with_fields(config, {f"model.{field}": value}))


def test_a_field_is_refused_only_where_it_is_ignored():
  for name in ("decoder", "segnet", "unet"):  # every family takes an operator now
    validate.check_fields(_config(**{"model.name": name, "model.upsample": "nearest",
                                     "data.crop_size": 64}))
  validate.check_fields(_config(**{"model.name": "decoder", "model.skips": True,
                                   "data.crop_size": 64}))
  with pytest.raises(ValueError, match="ignores model.skips="):
    validate.check_fields(_config(**{"model.name": "unet", "model.skips": True,
                                     "data.crop_size": 64}))


def test_step_schedule_drops_tenfold():
  cfg = _config(**{"optimizer.schedule": "step", "optimizer.warmup_steps": 0}).optimizer
  default = optim.learning_rate_schedule(cfg, 900)  # step_every 0: every 300 steps
  lr = cfg.learning_rate
  assert [float(default(s)) for s in (0, 299, 300, 600)] == pytest.approx(
      [lr, lr, lr / 10, lr / 100])
  cfg.step_every = 100
  every = optim.learning_rate_schedule(cfg, 900)
  assert float(every(250)) == pytest.approx(lr / 100)
