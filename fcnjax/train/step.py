"""The one train-step body and the eval step, written for a named device axis.

Both drivers (`jax.pmap` and `jax.jit` over a `Mesh` with `shard_map`) run
these functions per device shard with the same `axis_name`, so their numbers
agree. Gradients: params are cast to *varying* along the axis first, so each
shard differentiates its own part of the loss (`losses.Loss`: the loss of the
global batch, formed from statistics summed over the axis) and the gradients
are summed with an explicit `psum` (under `shard_map` with replicated params
the sum would otherwise happen implicitly, and a further `pmean` would be
wrong).
"""
import jax
import jax.numpy as jnp
import optax
from jax import lax

from fcnjax import metrics as seg_metrics

from fcnjax.data.palette import IGNORE_INDEX


def _varying(tree, axis_name):
  return jax.tree.map(lambda x: lax.pcast(x, axis_name, to="varying"), tree)


def train_step(state, batch, rng, *, axis_name, loss_fn):
  """One optimisation step on this device's shard of the global batch.

  batch: {'image': (n, H, W, 3) float, 'label': (n, H, W) int}.
  loss_fn: a `losses.Loss`; it forms the loss of the *global* batch from
    statistics summed over axis_name (e.g. the mean over its valid pixels).
  Returns (new_state, metrics) with metrics identical on every shard; a step
  with a non-finite loss or gradient leaves the state unchanged.
  """
  rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), lax.axis_index(axis_name))
  params, batch_stats = _varying((state.params, state.batch_stats), axis_name)
  count = lax.psum(jnp.sum(batch["label"] != IGNORE_INDEX), axis_name).astype(jnp.float32)

  def objective(p):
    variables = {"params": p, "batch_stats": batch_stats}
    logits, updates = state.apply_fn(variables, batch["image"], train=True,
                                     rngs={"dropout": rng}, mutable=["batch_stats"])
    local, loss = loss_fn(logits, batch["label"], axis_name)
    return local, (loss, logits, updates.get("batch_stats", {}))

  (_, (loss, logits, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
  grads = lax.psum(grads, axis_name)
  new_stats = lax.pmean(new_stats, axis_name)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  # A branch rather than a select over the whole state, so no copy of the
  # state has to be kept (on VGG16's parameters alone: 83 ms vs ~290 ms per
  # update; the full FCN-8s step measured the same either way).
  new_state = lax.cond(finite, lambda s: s.apply_gradients(grads=grads, batch_stats=new_stats),
                       lambda s: s, state)
  preds = jnp.argmax(logits, axis=-1)
  correct = lax.psum(jnp.sum((preds == batch["label"]) & (batch["label"] != IGNORE_INDEX)),
                     axis_name)
  return new_state, {"loss": loss, "grad_norm": grad_norm, "finite": finite,
                     "pixel_acc": correct / jnp.maximum(count, 1.0)}


def eval_step(state, batch, *, axis_name, num_classes, boundary_width=2,
              ignore_index=IGNORE_INDEX):
  """Confusion matrix and boundary counts of this shard, summed over the axis."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = state.apply_fn(variables, batch["image"], train=False)
  preds = jnp.argmax(logits, axis=-1)
  hist = seg_metrics.confusion_matrix(batch["label"], preds, num_classes, ignore_index)
  inter, union = seg_metrics.boundary_counts(batch["label"], preds, num_classes,
                                             width=boundary_width, ignore_index=ignore_index)
  return lax.psum({"hist": hist, "boundary_inter": inter, "boundary_union": union}, axis_name)


def predict_step(state, images):
  """Per-pixel argmax (N, H, W) int32 and logits for a batch of images."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = state.apply_fn(variables, images, train=False)
  return jnp.argmax(logits, axis=-1), logits
