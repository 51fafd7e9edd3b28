"""optax optimisers and learning-rate schedules built from `config.optimizer`."""
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "poly", "step")


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int):
  """cfg.schedule in SCHEDULES, with optional linear warmup (cfg.warmup_steps)."""
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps)
  elif cfg.schedule == "poly":  # DeepLab-style (1 - t/T)^0.9
    main = optax.polynomial_schedule(lr, 0.0, 0.9, decay_steps)
  elif cfg.schedule == "step":
    every = cfg.step_every or max(decay_steps // 3, 1)  # 0: three drops
    main = optax.exponential_decay(lr, every, 0.1, staircase=True)
  else:
    raise ValueError(f"config.optimizer.schedule={cfg.schedule!r}; valid: {SCHEDULES}")
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def create_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  """SGD (momentum, nesterov), Adam or AdamW; weight decay; grad clipping.
  `cfg` has every field of `configs.default_config().optimizer` (its values are
  the defaults: none is filled in here)."""
  schedule = learning_rate_schedule(cfg, total_steps)
  parts = []
  if cfg.grad_clip:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip))
  if cfg.name == "sgd":
    if cfg.weight_decay:  # Caffe-style L2 added to the gradient
      parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.sgd(schedule, momentum=cfg.momentum or None,
                           nesterov=cfg.nesterov))
  elif cfg.name == "adam":
    if cfg.weight_decay:
      parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.adam(schedule))
  elif cfg.name == "adamw":
    parts.append(optax.adamw(schedule, weight_decay=cfg.weight_decay))
  else:
    raise ValueError(f"config.optimizer.name={cfg.name!r}; valid: {OPTIMIZERS}")
  return optax.chain(*parts), schedule
