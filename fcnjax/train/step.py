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
import functools
from typing import NamedTuple

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
  preds = predict_labels(state, batch["image"])
  return lax.psum(seg_metrics.counts(batch["label"], preds, num_classes, boundary_width,
                                     ignore_index), axis_name)


def predict_step(state, images):
  """Per-pixel argmax (N, H, W) int32 and logits for a batch of images."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = state.apply_fn(variables, images, train=False)
  return jnp.argmax(logits, axis=-1), logits


class TTA(NamedTuple):
  """Test-time augmentation: each scale s a pass on the image resized to
  round(s*H) x round(s*W), each also mirrored left-right when `flip`."""
  scales: tuple = (1.0,)
  flip: bool = False


def check_tta(scales, flip=False):
  """A `TTA` from --tta_scales / --tta_flip (None for neither); ValueError
  naming --tta_scales for a scale that is not a positive number."""
  if not scales and not flip:
    return None
  try:
    scales = tuple(float(s) for s in (scales or (1.0,)))
  except (TypeError, ValueError):
    raise ValueError(f"--tta_scales={scales}: expected numbers > 0, e.g. 0.75,1,1.25") from None
  if not all(s > 0 and s == s and s != float("inf") for s in scales):
    raise ValueError(f"--tta_scales={','.join(map(str, scales))}: every scale must be > 0")
  return TTA(scales, bool(flip))


def tta_passes(tta):
  """[(scale, mirror), ...]: a `TTA`'s passes, in the order they are averaged."""
  return [(s, m) for s in tta.scales for m in ((False, True) if tta.flip else (False,))]


def pass_probabilities(apply, images, scale, mirror):
  """(N, H, W, C) float32 softmax probabilities of one test-time pass: the
  (N, H, W, 3) images resized bilinearly to round(scale*H) x round(scale*W)
  (half-pixel centres, no antialiasing), mirrored left-right if `mirror`,
  `apply` (images -> logits), the mirror undone, the logits resized back to
  H x W the same way."""
  n, h, w, _ = images.shape
  size = (n, round(scale * h), round(scale * w), images.shape[-1])
  x = images if size == images.shape else jax.image.resize(images, size, "bilinear",
                                                           antialias=False)
  logits = apply(x[:, :, ::-1] if mirror else x).astype(jnp.float32)
  logits = logits[:, :, ::-1] if mirror else logits
  if logits.shape[1:3] != (h, w):
    logits = jax.image.resize(logits, (n, h, w, logits.shape[-1]), "bilinear",
                              antialias=False)
  return jax.nn.softmax(logits, axis=-1)


def tta_probabilities(apply, images, tta):
  """(N, H, W, C) float32 softmax probabilities averaged over the passes of
  `tta` (mmsegmentation's TTA; each pass `pass_probabilities`)."""
  passes = tta_passes(tta)
  total = 0.0
  for scale, mirror in passes:
    total = total + pass_probabilities(apply, images, scale, mirror)
  return total / len(passes)


def predict_labels(state, images, tta=None):
  """(N, H, W) int32 labels of a batch: the argmax of the logits, or with a
  `TTA` of `tta_probabilities` (jit with tta static)."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  apply = functools.partial(state.apply_fn, variables, train=False)
  if tta is None:
    return jnp.argmax(apply(images), axis=-1)
  return jnp.argmax(tta_probabilities(apply, images, tta), axis=-1)
