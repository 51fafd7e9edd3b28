"""The loss registry: each term against a float64 reference written from its
paper's formula (PyTorch autograd for the gradients), Lovász-softmax also
against the Jaccard loss of hard predictions, the ignore label, the edges
(ignore-only, one class), 1 vs 8 devices for every term, and the names.

Tolerances: a float32 sum of n terms is within about n * eps32 of the exact
sum, so values and gradients are compared with rtol = n * eps32 (n the
pixels a statistic sums), gradients with atol = rtol * their largest entry.
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from fcnjax import configs as config_lib
from fcnjax.runtime import errors
from fcnjax.studies import experiment
from fcnjax.train import assemble, loop, losses, parallel, validate
from fcnjax.train import state as state_lib

C = 4
EPS32 = float(np.finfo(np.float32).eps)


def _rtol(n):
  return max(n, 8) * EPS32


def _inputs(seed=0, shape=(3, 5, 6)):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=shape + (C,)).astype(np.float32)
  labels = rng.integers(0, C, size=shape)
  labels[1] = np.where(labels[1] == 3, 1, labels[1])  # a class absent from one image
  labels[0, 0, :4] = 255
  return logits, labels


_COMPILED = {}


def _jax(name, logits, labels, **options):
  """(value, d value / d logits) of the named loss without devices."""
  key = (name, repr(sorted(options.items())))
  if key not in _COMPILED:
    loss = losses.make_loss(name, **options)
    _COMPILED[key] = jax.jit(jax.value_and_grad(lambda x, y: loss(x, y)[1]))
  value, grad = _COMPILED[key](jnp.asarray(logits), jnp.asarray(labels))
  return float(value), np.asarray(grad)


def _torch(reference, logits, labels, **kwargs):
  x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
  value = reference(x, torch.as_tensor(labels), **kwargs)
  value.backward()
  return float(value.detach()), x.grad.numpy()


def _check(got, want, n):
  rtol = _rtol(n)
  np.testing.assert_allclose(got[0], want[0], rtol=rtol)
  np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=rtol * np.abs(want[1]).max())


# References from the papers' formulas, in float64.

def _dice_reference(x, labels):
  """1 - 2|P∩G| / (|P| + |G|) per class over the valid pixels, mean over present classes."""
  valid = labels != 255
  p = torch.softmax(x, -1)[valid]
  g = torch.nn.functional.one_hot(labels[valid].long(), C).double()
  scores = [1 - 2 * (p[:, c] * g[:, c]).sum() / (p[:, c].sum() + g[:, c].sum())
            for c in range(C) if g[:, c].sum() > 0]
  return torch.stack(scores).mean()


def _focal_reference(x, labels, gamma=2.0, weights=None, reduction="mean"):
  """FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t (Lin et al., eq. 5), alpha_t the class weight."""
  valid = labels != 255
  log_pt = torch.log_softmax(x, -1)[valid].gather(1, labels[valid].long()[:, None])[:, 0]
  fl = -(1 - log_pt.exp()) ** gamma * log_pt
  if weights is not None:
    fl = fl * torch.as_tensor(weights, dtype=torch.float64)[labels[valid].long()]
  return fl.sum() / (valid.sum() if reduction == "mean" else 1)


def _jaccard_loss(mistakes, truth):
  """Delta_J(M) = |M| / |{y = c} ∪ M| (Berman et al., eq. 4), sets of pixel indices."""
  union = truth | mistakes
  return len(mistakes) / len(union) if union else 0.0


def _lovasz_extension(errors, truth):
  """f(m) = sum_i m_pi(i) (Delta(pi_1..pi_i) - Delta(pi_1..pi_i-1)), m sorted decreasing
  (Berman et al., eq. 8-9), with Delta evaluated on each prefix set."""
  order = torch.argsort(errors.detach(), descending=True).tolist()
  total, prefix, before = 0.0, set(), 0.0
  for i in order:
    prefix.add(i)
    after = _jaccard_loss(prefix, truth)
    total = total + errors[i] * (after - before)
    before = after
  return total


def _lovasz_reference(x, labels):
  """Per image: mean over its present classes of the extension at m = |g - p| over its
  valid pixels (ignored pixels removed); then the mean over images with valid pixels."""
  per_image = []
  for xi, yi in zip(x, labels):
    valid = yi != 255
    if not valid.any():
      continue
    p, y = torch.softmax(xi, -1)[valid], yi[valid]
    scores = []
    for c in range(C):
      truth = set(torch.nonzero(y == c)[:, 0].tolist())
      if truth:
        scores.append(_lovasz_extension((((y == c).double()) - p[:, c]).abs(), truth))
    per_image.append(torch.stack(scores).mean())
  return torch.stack(per_image).mean()


def test_dice_against_reference():
  logits, labels = _inputs()
  _check(_jax("dice", logits, labels), _torch(_dice_reference, logits, labels), labels.size)


@pytest.mark.parametrize("gamma, reduction, weighted", [
    (2.0, "mean", False), (0.5, "sum", False), (3.0, "mean", True)])
def test_focal_against_reference(gamma, reduction, weighted):
  logits, labels = _inputs(1)
  weights = np.array([0.5, 1.0, 2.0, 3.0], np.float32) if weighted else None
  got = _jax("focal", logits, labels, focal_gamma=gamma, reduction=reduction,
             class_weights=weights)
  want = _torch(_focal_reference, logits, labels, gamma=gamma, weights=weights,
                reduction=reduction)
  _check(got, want, labels.size)


def test_focal_with_gamma_zero_is_cross_entropy():
  logits, labels = _inputs(2)
  _check(_jax("focal", logits, labels, focal_gamma=0.0), _jax("ce", logits, labels),
         labels.size)


def test_cross_entropy_term_is_the_mean_or_sum_of_cross_entropy_sum():
  logits, labels = _inputs(3)
  weights = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
  total, count = jax.jit(losses.cross_entropy_sum)(jnp.asarray(logits), jnp.asarray(labels),
                                                   class_weights=weights)
  assert _jax("ce", logits, labels, class_weights=weights)[0] == float(total / count)
  assert _jax("ce", logits, labels, class_weights=weights, reduction="sum")[0] == float(total)


def test_lovasz_against_reference():
  logits, labels = _inputs(4)
  labels[2] = 255  # an image with no valid pixel is left out of the mean
  _check(_jax("lovasz", logits, labels), _torch(_lovasz_reference, logits, labels),
         labels[0].size)


def test_lovasz_of_hard_predictions_is_the_jaccard_loss():
  """At one-hot probabilities the extension equals 1 - IoU of the hard prediction."""
  rng = np.random.default_rng(5)
  lovasz = jax.jit(losses.lovasz_softmax_image)
  for _ in range(20):
    labels = rng.integers(0, 3, size=7)
    labels[rng.random(7) < 0.2] = 255
    pred = rng.integers(0, 3, size=7)
    valid = labels != 255
    truth = np.eye(3, dtype=np.float32)[np.where(valid, labels, 0)] * valid[:, None]
    probs = np.eye(3, dtype=np.float32)[pred] * valid[:, None]
    got, counted = lovasz(jnp.asarray(probs), jnp.asarray(truth), jnp.asarray(valid))
    ious = [np.sum(valid & (labels == c) & (pred == c)) /
            np.sum(valid & ((labels == c) | (pred == c)))
            for c in range(3) if np.any(labels[valid] == c)]
    assert bool(counted) == bool(ious)
    np.testing.assert_allclose(float(got), 1 - np.mean(ious) if ious else 0.0, rtol=1e-6)


NAMES = ("ce", "focal", "dice", "lovasz", "ce+0.5*dice")


@pytest.mark.parametrize("name", NAMES)
def test_ignored_pixels_change_nothing(name):
  logits, labels = _inputs(6)
  value, grad = _jax(name, logits, labels)
  ignored = labels == 255
  moved = np.where(ignored[..., None], 50.0 * np.random.default_rng(0).normal(size=logits.shape),
                   logits).astype(np.float32)
  value2, grad2 = _jax(name, moved, labels)
  assert value2 == value
  np.testing.assert_array_equal(grad2, grad)
  assert not grad[ignored].any()


@pytest.mark.parametrize("name", NAMES)
def test_edges_have_finite_gradients(name):
  logits, _ = _inputs(7)
  only_ignored = np.full(logits.shape[:-1], 255)
  value, grad = _jax(name, logits, only_ignored)
  assert value == 0.0 and np.isfinite(grad).all() and not grad.any()
  one_class = np.zeros(logits.shape[:-1], int)
  for x in (logits, 30.0 * np.eye(C, dtype=np.float32)[one_class]):  # also saturated
    value, grad = _jax(name, x, one_class)
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_combination_is_the_weighted_sum():
  logits, labels = _inputs(8)
  parts = {n: _jax(n, logits, labels) for n in ("ce", "dice", "lovasz")}
  got = _jax("ce+0.5*dice+2*lovasz", logits, labels)
  np.testing.assert_allclose(got[0], parts["ce"][0] + 0.5 * parts["dice"][0]
                             + 2 * parts["lovasz"][0], rtol=1e-6)
  np.testing.assert_allclose(got[1], parts["ce"][1] + 0.5 * parts["dice"][1]
                             + 2 * parts["lovasz"][1], rtol=1e-5, atol=1e-8)


# 1 vs 8 devices: each term is formed from statistics summed over the devices.

class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Conv(C, (1, 1))(nn.relu(nn.Conv(8, (3, 3))(x)))


def _batches():
  rng = np.random.default_rng(9)
  out = []
  for _ in range(2):
    labels = rng.integers(0, C, size=(8, 8, 8))
    labels[::2] = np.minimum(labels[::2], 1)  # images with classes 0-1 only
    labels[:, :2] = 255
    labels[5] = 255  # an image with no valid pixel
    out.append({"image": rng.normal(size=(8, 8, 8, 3)).astype(np.float32),
                "label": labels.astype(np.int32)})
  return out


_PARAMS = []


def _init():
  """A fresh train state from the same initial parameters (initialised once)."""
  if not _PARAMS:
    _PARAMS.append(jax.device_get(state_lib.create_train_state(
        _Tiny(), optax.sgd(0.5), jax.random.key(0), (1, 8, 8, 3)).params))
  return state_lib.TrainState.create(apply_fn=_Tiny().apply, tx=optax.sgd(0.5), batch_stats={},
                                     params=jax.tree.map(np.copy, _PARAMS[0]))


def _reference(loss):
  state, values = _init(), []
  value_and_grad = jax.jit(jax.value_and_grad(
      lambda p, batch: loss(state.apply_fn({"params": p}, batch["image"]), batch["label"])[1]))
  for batch in _batches():
    value, grads = value_and_grad(state.params, batch)
    state = state.apply_gradients(grads=grads)
    values.append(float(value))
  return values, state.params


@pytest.mark.parametrize("name, runs", [
    ("ce", [("jit", 8)]), ("focal", [("pmap", 8)]), ("dice", [("jit", 8), ("pmap", 8)]),
    ("lovasz", [("jit", 8), ("pmap", 8)]), ("ce+0.5*dice", [("jit", 8), ("jit", 1)])])
def test_eight_devices_give_the_loss_and_gradients_of_one(name, runs):
  """Both drivers on the terms formed from sums (dice, lovasz); test_parallel.py
  runs cross-entropy through every driver and device count."""
  assert jax.device_count() == 8
  loss = losses.make_loss(name)
  want_values, want_params = _reference(loss)
  for driver_name, n in runs:
    driver = parallel.make_driver(driver_name, loss_fn=loss, num_classes=C, num_devices=n)
    state, values = driver.put_state(_init()), []
    for batch in _batches():
      state, metrics = driver.train(state, batch, jax.random.key(1))
      values.append(float(metrics["loss"]))
    np.testing.assert_allclose(values, want_values, rtol=1e-5, err_msg=driver_name)
    for x, y in zip(jax.tree.leaves(driver.to_host(state).params), jax.tree.leaves(want_params)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6, err_msg=driver_name)


@pytest.mark.parametrize("name", ("dice", "lovasz"))
def test_per_device_forming_would_differ(name):
  """The mean over devices of each shard's own loss is not the global loss, so
  the comparison above can see a term formed before the device sum."""
  loss, batch = losses.make_loss(name), _batches()[0]

  @jax.jit
  def whole_and_shards(params, images, labels):
    logits = _Tiny().apply({"params": params}, images)
    shards = jax.vmap(lambda x, y: loss(x, y)[1])(logits.reshape((4, 2) + logits.shape[1:]),
                                                 labels.reshape((4, 2) + labels.shape[1:]))
    return loss(logits, labels)[1], jnp.mean(shards)
  whole, shards = map(float, whole_and_shards(_init().params, batch["image"], batch["label"]))
  assert abs(shards - whole) > 10 * 1e-5 * whole  # 10x the comparison's rtol


# Names and configs.

def test_parse_and_bad_names():
  assert losses.parse("ce+0.5*dice") == [(1.0, "ce"), (0.5, "dice")]
  assert losses.parse(" focal + 2 * lovasz ") == [(1.0, "focal"), (2.0, "lovasz")]
  for bad in ("tversky", "ce+", "0*dice", "-1*dice", "ce*0.5", ""):
    with pytest.raises(ValueError, match="is not a loss term"):
      losses.make_loss(bad)


def _config(**fields):
  return experiment.with_fields(config_lib.default_config(), fields)


def test_config_fields_are_checked():
  validate.check_fields(_config(**{"loss.name": "ce+0.5*lovasz", "loss.focal_gamma": 0.0}))
  with pytest.raises(validate.ConfigError, match=r"^config.loss.name='ce\+tversky': 'tversky'"):
    validate.check_fields(_config(**{"loss.name": "ce+tversky"}))
  with pytest.raises(validate.ConfigError, match="config.loss.focal_gamma=-1.0"):
    validate.check_fields(_config(**{"loss.focal_gamma": -1.0}))
  with pytest.raises(validate.ConfigError, match="config.class_weighting='median_frequency'"):
    validate.check_fields(_config(**{"loss.name": "dice", "class_weighting": "median_frequency"}))


def test_a_config_without_the_loss_block_trains_cross_entropy():
  config = _config(loss_reduction="sum")
  del config["loss"]
  validate.check_fields(config)
  loss = assemble.make_loss(config)
  assert loss.name == "ce"
  logits, labels = _inputs()
  total, _ = losses.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(labels))
  assert float(loss(jnp.asarray(logits), jnp.asarray(labels))[1]) == float(total)


def test_an_unknown_loss_is_one_error_line_and_nothing_is_written(tmp_path):
  config = _config(**{"loss.name": "ce+focall", "data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(SystemExit) as e:
    errors.as_messages(lambda argv: loop.train_and_evaluate(config, str(tmp_path / "run")), [])
  line = str(e.value.code)
  assert line.startswith("error: config.loss.name='ce+focall': 'focall' is not a loss term")
  assert "\n" not in line and not os.listdir(tmp_path)
