"""One step body, two drivers: pmap vs jit/shard_map, 1 vs 8 devices, against a
plain single-device reference with no collectives at all."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from fcnjax import models
from fcnjax.train import losses as loss_lib
from fcnjax.train import parallel
from fcnjax.train import state as state_lib

NUM_CLASSES = 4
STEPS = 3


def _model():
  cfg = ml_collections.ConfigDict(dict(name="fcn", variant="8s", backbone="tiny",
                                       upsample="learned", zero_init_score=False,
                                       dropout_rate=0.0))
  return models.build_model(cfg, NUM_CLASSES)


def _batches():
  rng = np.random.default_rng(0)
  out = []
  for _ in range(STEPS):
    labels = rng.integers(0, NUM_CLASSES, size=(8, 32, 32)).astype(np.int32)
    labels[:, :4] = 255  # ignored rows
    labels[3] = 255  # one image entirely ignored: the count must be global
    out.append({"image": rng.normal(size=(8, 32, 32, 3)).astype(np.float32), "label": labels})
  return out


def _initial_state(tx):
  return state_lib.create_train_state(_model(), tx, jax.random.key(0), (1, 32, 32, 3))


def _reference(tx):
  """Mean loss over all valid pixels of the global batch, no devices axis."""
  @jax.jit
  def step(state, batch):
    def loss_fn(p):
      logits = state.apply_fn({"params": p}, batch["image"])
      total, count = loss_lib.cross_entropy_sum(logits, batch["label"])
      return total / count
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  state, losses = _initial_state(tx), []
  for batch in _batches():
    state, loss = step(state, batch)
    losses.append(float(loss))
  return losses, state.params


def _run(driver_name, num_devices, tx):
  driver = parallel.make_driver(driver_name, loss_fn=loss_lib.make_loss("ce"),
                                num_classes=NUM_CLASSES, num_devices=num_devices)
  state = driver.put_state(_initial_state(tx))
  losses = []
  for batch in _batches():
    state, metrics = driver.train(state, batch, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  return losses, driver.to_host(state).params


def _assert_same(a, b, rtol=2e-4):
  (la, pa), (lb, pb) = a, b
  np.testing.assert_allclose(la, lb, rtol=rtol)
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-5)


@pytest.fixture(scope="module")
def sgd_reference():
  # Plain SGD: unlike Adam it is not scale invariant, so wrong gradient
  # scaling (the N-times-too-large shard_map pitfall) changes the parameters.
  return _reference(optax.sgd(0.5))


@pytest.mark.parametrize("driver_name,num_devices", [("pmap", 8), ("pmap", 1),
                                                      ("jit", 8), ("jit", 1)])
def test_drivers_match_reference(sgd_reference, driver_name, num_devices):
  assert jax.device_count() == 8
  _assert_same(_run(driver_name, num_devices, optax.sgd(0.5)), sgd_reference)


def test_parameters_actually_change(sgd_reference):
  initial = _initial_state(optax.sgd(0.5)).params
  moved = [float(np.abs(a - b).max()) for a, b in
           zip(jax.tree.leaves(initial), jax.tree.leaves(sgd_reference[1]))]
  assert max(moved) > 1e-3


def test_naive_shard_map_pmean_is_caught(sgd_reference):
  """pmean of grads from replicated params under shard_map: grads 8x too large.

  This is the silent pitfall; the comparison above must be able to see it.
  """
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
  state = _initial_state(optax.sgd(0.5))

  def naive_step(state, batch):
    def loss_fn(p):
      logits = state.apply_fn({"params": p}, batch["image"])
      total, count = loss_lib.cross_entropy_sum(logits, batch["label"])
      return total / jnp.maximum(count, 1.0)
    grads = lax.pmean(jax.grad(loss_fn)(state.params), "batch")
    return state.apply_gradients(grads=grads)

  step = jax.jit(jax.shard_map(naive_step, mesh=mesh, in_specs=(P(), P("batch")),
                               out_specs=P()))
  for batch in _batches():
    state = step(state, jax.device_put(
        batch, jax.sharding.NamedSharding(mesh, P("batch"))))
  with pytest.raises(AssertionError):
    _assert_same((sgd_reference[0], state.params), sgd_reference)


def test_summed_loss_is_sum_over_global_batch():
  tx = optax.sgd(1e-4)
  state = _initial_state(tx)
  batch = _batches()[0]
  logits = state.apply_fn({"params": state.params}, batch["image"])
  expected, _ = loss_lib.cross_entropy_sum(logits, batch["label"])
  driver = parallel.make_driver("jit", loss_fn=loss_lib.make_loss("ce", reduction="sum"),
                                num_classes=NUM_CLASSES)
  _, metrics = driver.train(driver.put_state(state), batch, jax.random.key(0))
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-4)


def test_cross_entropy_against_numpy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 5, 6))
  labels[0, 0] = 255
  total, count = loss_lib.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(labels))
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  valid = labels != 255
  expected = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(total), expected[valid].sum(), rtol=1e-5)
  assert float(count) == valid.sum()


def test_driver_errors():
  with pytest.raises(ValueError, match="config.parallel"):
    parallel.make_driver("pjit", loss_fn=loss_lib.make_loss("ce"), num_classes=2)
  with pytest.raises(ValueError, match="num_devices"):
    parallel.make_driver("jit", loss_fn=loss_lib.make_loss("ce"), num_classes=2, num_devices=64)
  driver = parallel.make_driver("pmap", loss_fn=loss_lib.make_loss("ce"), num_classes=2)
  with pytest.raises(ValueError, match="not divisible"):
    driver.put_batch({"image": np.zeros((3, 8, 8, 3))})


def _bn_model(axis_name):
  cfg = ml_collections.ConfigDict(dict(name="fcn", variant="8s", backbone="small",
                                       zero_init_score=False, dropout_rate=0.0))
  return models.build_model(cfg, NUM_CLASSES, axis_name=axis_name)


def test_batchnorm_statistics_span_all_devices():
  """The default (BatchNorm) model on 8 devices == one device seeing the whole
  batch, plain BatchNorm, no collectives: same loss, parameters and statistics
  after a step; without the axis (per-device statistics) they differ."""
  tx = optax.sgd(0.1)
  init = lambda model: state_lib.create_train_state(model, tx, jax.random.key(0),
                                                    (1, 32, 32, 3))
  @jax.jit
  def step(state, batch):
    def loss_fn(p):
      logits, upd = state.apply_fn({"params": p, "batch_stats": state.batch_stats},
                                   batch["image"], train=True, mutable=["batch_stats"])
      total, count = loss_lib.cross_entropy_sum(logits, batch["label"])
      return total / count, upd["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=stats), loss

  state, ref_losses = init(_bn_model(None)), []
  for batch in _batches()[:1]:
    state, loss = step(state, batch)
    ref_losses.append(float(loss))
  for axis_name, agrees in ((parallel.AXIS, True), (None, False)):
    driver = parallel.make_driver("jit", loss_fn=loss_lib.make_loss("ce"),
                                  num_classes=NUM_CLASSES)
    run = driver.put_state(init(_bn_model(axis_name)))
    losses = []
    for batch in _batches()[:1]:
      run, metrics = driver.train(run, batch, jax.random.key(1))
      losses.append(float(metrics["loss"]))
    run = driver.to_host(run)
    same = np.allclose(losses, ref_losses, rtol=1e-4) and all(
        np.allclose(a, b, rtol=2e-4, atol=2e-5) for a, b in
        zip(jax.tree.leaves((run.params, run.batch_stats)),
            jax.tree.leaves((state.params, state.batch_stats))))
    assert same == agrees, (axis_name, losses, ref_losses)  # per-device BN differs
