"""Schedules and optimisers built from config.optimizer, against their formulas."""
import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fcnjax.train import optim


def _cfg(**fields):
  base = dict(name="sgd", learning_rate=0.1, schedule="constant", warmup_steps=0,
              momentum=0.0, nesterov=False, weight_decay=0.0, grad_clip=0.0, step_every=0)
  return ml_collections.ConfigDict({**base, **fields})


def _decayed(schedule, t):
  """lr at step t >= 10 of a 100-step run after 10 warmup steps (lr 0.1)."""
  u = (t - 10) / 90
  return {"constant": 0.1, "cosine": 0.05 * (1 + math.cos(math.pi * u)),
          "poly": 0.1 * (1 - u) ** 0.9, "step": 0.1 * 0.1 ** ((t - 10) // 30)}[schedule]


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
def test_schedule_values_follow_the_formula(schedule):
  lr = optim.learning_rate_schedule(_cfg(schedule=schedule, warmup_steps=10), 100)
  for t in (0, 3, 9):  # linear warmup from 0
    np.testing.assert_allclose(float(lr(t)), 0.1 * t / 10, rtol=1e-6, atol=1e-9)
  for t in (10, 39, 40, 55, 70, 99):
    np.testing.assert_allclose(float(lr(t)), _decayed(schedule, t), rtol=1e-5, atol=1e-9)


def test_step_every_sets_the_drop_interval():
  lr = optim.learning_rate_schedule(_cfg(schedule="step", step_every=7), 100)
  got = [float(lr(t)) for t in (0, 6, 7, 13, 14)]
  np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-5)


def _reference_updates(cfg, params, grads):
  """Plain numpy SGD / Adam / AdamW at a constant learning rate, step by step."""
  p, m, v = params.copy(), np.zeros_like(params), np.zeros_like(params)
  lr, wd, out = cfg.learning_rate, cfg.weight_decay, []
  for t, g in enumerate(grads, start=1):
    if cfg.grad_clip:
      g = g * min(1.0, cfg.grad_clip / np.linalg.norm(g))
    if cfg.name in ("sgd", "adam"):
      g = g + wd * p  # L2 added to the gradient
    if cfg.name == "sgd":
      m = g + cfg.momentum * m
      step = g + cfg.momentum * m if cfg.nesterov else m
    else:
      m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
      step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
      if cfg.name == "adamw":
        step = step + wd * p  # decoupled weight decay
    p = p - lr * step
    out.append(p)
  return out


CASES = [dict(name="sgd"), dict(name="sgd", momentum=0.9, weight_decay=0.01),
         dict(name="sgd", momentum=0.9, nesterov=True, grad_clip=0.5),
         dict(name="adam", weight_decay=0.01), dict(name="adamw", weight_decay=0.01)]


@pytest.mark.parametrize("fields", CASES, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_optimizer_updates_match_numpy(fields):
  cfg = _cfg(**fields)
  tx, _ = optim.create_optimizer(cfg, total_steps=10)
  rng = np.random.default_rng(0)
  params = rng.normal(size=5).astype(np.float32)
  grads = [rng.normal(size=5).astype(np.float32) for _ in range(4)]
  p, state = jnp.asarray(params), tx.init(jnp.asarray(params))
  expected = _reference_updates(cfg, params.astype(np.float64), grads)
  for g, want in zip(grads, expected):
    updates, state = tx.update(jnp.asarray(g), state, p)
    p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(np.asarray(p), want, rtol=1e-5, atol=1e-6)


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match="optimizer.name"):
    optim.create_optimizer(_cfg(name="lbfgs"), 10)
  with pytest.raises(ValueError, match="optimizer.schedule"):
    optim.learning_rate_schedule(_cfg(schedule="linear"), 10)
