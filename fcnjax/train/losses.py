"""The training losses: one registry of terms, combined by name ('ce+0.5*dice').

A term is `Term(stats, form)`: `stats(logits, labels, num_valid)` returns sums
over this device's pixels (a pytree), those sums are added over the devices,
and `form(summed)` makes the term's value from them. So a loss that is not a
per-pixel sum (Dice, Lovász) is the loss of the *global* batch, and 1 and 8
devices give the same loss and gradients. logits (n, H, W, C), labels
(n, H, W) int; `palette.IGNORE_INDEX` (255) pixels count nowhere; num_valid is
the global batch's count of the other pixels (float32).

- `ce`: softmax cross-entropy, the pixel sum divided by num_valid
  (`reduction='mean'`) or not (`'sum'`, the reference FCN's loss);
  `class_weights` (C,) scale each pixel by its true class's weight.
- `focal` (Lin et al. 2017): `-(1 - p_t)**gamma * log p_t`, reduced and
  weighted (the weights are its alpha_t) as `ce`; gamma 0 is `ce`.
- `dice`: soft Dice (Sørensen, as segmentation_models_pytorch): per class
  `1 - 2 sum(p g) / (sum p + sum g)` over the global batch's valid pixels,
  averaged over the classes present in its labels.
- `lovasz`: Lovász-softmax (Berman et al. 2018), per image: each image's
  loss is the mean over the classes present in it of the Lovász extension of
  the Jaccard loss at its pixel errors `|g - p|`; the loss is the mean over
  the images with valid pixels. Per image, because the extension sorts all
  the pixels it covers: an image lies on one device, so no errors have to be
  gathered, and devices only add (loss sum, image count).

`reduction` and `class_weights` concern the per-pixel terms (`PIXEL_TERMS`).
"""
import dataclasses
import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fcnjax.data.palette import IGNORE_INDEX

REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass
class Options:
  """What the terms read: reduction and class_weights (per-pixel terms), focal_gamma."""
  reduction: str = "mean"
  class_weights: Any = None  # None or (C,)
  focal_gamma: float = 2.0


class Term(NamedTuple):
  stats: Callable  # (logits, labels, num_valid) -> pytree of this device's sums
  form: Callable  # the device-summed pytree -> scalar


def cross_entropy_sum(logits, labels, ignore_index=IGNORE_INDEX, class_weights=None):
  """Per-pixel softmax cross-entropy summed over valid pixels.

  logits (N, H, W, C), labels (N, H, W) int; pixels == ignore_index count 0;
  class_weights (C,) scales each pixel's loss by its true class's weight.
  Returns (loss_sum, valid_pixel_count), both float32 scalars.
  """
  valid = labels != ignore_index
  safe = jnp.where(valid, labels, 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), safe)
  if class_weights is not None:
    losses = losses * jnp.asarray(class_weights, jnp.float32)[safe]
  return jnp.sum(jnp.where(valid, losses, 0.0)), jnp.sum(valid).astype(jnp.float32)


def _denominator(reduction, num_valid):
  return jnp.maximum(num_valid, 1.0) if reduction == "mean" else 1.0


def cross_entropy(options):
  def stats(logits, labels, num_valid):
    total, _ = cross_entropy_sum(logits, labels, class_weights=options.class_weights)
    # This device's share of the global mean: the same arithmetic as a psum of shares.
    return total / _denominator(options.reduction, num_valid)
  return Term(stats, lambda s: s)


def _power(x, gamma):
  """x**gamma for x >= 0 with a finite gradient at x = 0."""
  if float(gamma).is_integer():
    return x ** int(gamma)
  positive = x > 0
  return jnp.where(positive, jnp.where(positive, x, 1.0) ** gamma, 0.0)


def focal(options):
  def stats(logits, labels, num_valid):
    valid = labels != IGNORE_INDEX
    safe = jnp.where(valid, labels, 0)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
    log_pt = jnp.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    losses = -_power(-jnp.expm1(log_pt), options.focal_gamma) * log_pt
    if options.class_weights is not None:
      losses = losses * jnp.asarray(options.class_weights, jnp.float32)[safe]
    return jnp.sum(jnp.where(valid, losses, 0.0)) / _denominator(options.reduction, num_valid)
  return Term(stats, lambda s: s)


def _probs_and_truth(logits, labels):
  """Softmax probabilities and one-hot labels (..., C), both 0 at ignored pixels."""
  valid = (labels != IGNORE_INDEX)[..., None]
  probs = jax.nn.softmax(logits.astype(jnp.float32)) * valid
  truth = jax.nn.one_hot(jnp.where(valid[..., 0], labels, 0), logits.shape[-1]) * valid
  return probs, truth, valid[..., 0]


def _mean_over_present(losses, present):
  return jnp.sum(jnp.where(present, losses, 0.0)) / jnp.maximum(jnp.sum(present), 1)


def dice(options):
  del options

  def stats(logits, labels, num_valid):
    probs, truth, _ = _probs_and_truth(logits, labels)
    axes = tuple(range(probs.ndim - 1))
    return jnp.stack([jnp.sum(probs * truth, axes), jnp.sum(probs, axes), jnp.sum(truth, axes)])

  def form(s):
    inter, pred, true = s
    present = true > 0
    return _mean_over_present(1.0 - 2.0 * inter / jnp.where(present, pred + true, 1.0), present)
  return Term(stats, form)


def lovasz_grad(truth_sorted):
  """Increments of the Jaccard loss along the sorted pixels (Berman et al., Alg. 1).

  truth_sorted (P, C) in {0, 1}: whether each pixel, in decreasing order of
  its error, belongs to the class.
  """
  total = jnp.sum(truth_sorted, axis=0)
  inter = total - jnp.cumsum(truth_sorted, axis=0)
  union = total + jnp.cumsum(1.0 - truth_sorted, axis=0)  # >= 1 from the first pixel on
  jaccard = 1.0 - inter / union
  return jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)


def lovasz_softmax_image(probs, truth, valid):
  """One image's Lovász-softmax over its present classes: probs, truth (P, C), valid (P,).

  Returns (loss, whether it has a valid pixel). Ignored pixels sort after
  every valid one with error 0, so they add nothing to any class's sets.
  """
  errors = jnp.abs(truth - probs)
  keys = jnp.where(valid[:, None], lax.stop_gradient(errors), -1.0)
  order = jnp.argsort(-keys, axis=0)
  grad = lovasz_grad(jnp.take_along_axis(truth, order, axis=0))
  per_class = jnp.sum(jnp.take_along_axis(errors, order, axis=0) * grad, axis=0)
  present = jnp.sum(truth, axis=0) > 0
  return _mean_over_present(per_class, present), jnp.any(valid)


def lovasz_softmax(options):
  del options

  def stats(logits, labels, num_valid):
    probs, truth, valid = _probs_and_truth(logits, labels)
    n, c = probs.shape[0], probs.shape[-1]
    losses, counted = jax.vmap(lovasz_softmax_image)(
        probs.reshape(n, -1, c), truth.reshape(n, -1, c), valid.reshape(n, -1))
    return jnp.stack([jnp.sum(jnp.where(counted, losses, 0.0)),
                      jnp.sum(counted).astype(jnp.float32)])

  return Term(stats, lambda s: s[0] / jnp.maximum(s[1], 1.0))


LOSSES = {"ce": cross_entropy, "focal": focal, "dice": dice, "lovasz": lovasz_softmax}
PIXEL_TERMS = ("ce", "focal")  # the terms that read reduction and class_weights
_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d*)?(?:e-?\d+)?|\.\d+)\s*\*\s*)?([a-z_][a-z0-9_]*)\s*$")


def parse(name):
  """'ce+0.5*dice' -> [(1.0, 'ce'), (0.5, 'dice')]; ValueError for anything else."""
  terms = []
  for part in str(name).split("+"):
    match = _TERM.match(part)
    if not match or match.group(2) not in LOSSES or float(match.group(1) or 1) <= 0:
      raise ValueError(f"{part.strip()!r} is not a loss term: expected [weight*]name with "
                       f"weight > 0 and name in {tuple(LOSSES)}, joined by '+' "
                       "(e.g. 'ce+0.5*dice')")
    terms.append((float(match.group(1) or 1), match.group(2)))
  return terms


class Loss:
  """A weighted sum of terms, called on one device's logits and labels.

  `loss(logits, labels, axis_name=None)` -> (objective, value). value: the
  loss of the global batch (the batch across the devices of axis_name),
  identical on every device. objective: this device's part, whose gradient
  summed over the devices is value's gradient. The device sums are taken
  outside the differentiated path, and each device's statistics are weighted
  by the slope of the form at the global sums: a psum inside it would be
  transposed differently by the drivers (pmap: psum, N times too large;
  shard_map: to varying, exact). Without axis_name both are the loss of
  these logits alone.
  """

  def __init__(self, name, terms, options):
    self.name = name
    self.terms = [(w, LOSSES[t](options)) for w, t in terms]

  def _form(self, stats):
    return sum(w * term.form(s) for (w, term), s in zip(self.terms, stats))

  def __call__(self, logits, labels, axis_name=None):
    num_valid = jnp.sum(labels != IGNORE_INDEX)
    if axis_name is not None:
      num_valid = lax.psum(num_valid, axis_name)
    num_valid = num_valid.astype(jnp.float32)
    local = [term.stats(logits, labels, num_valid) for _, term in self.terms]
    if axis_name is None:
      value = self._form(local)
      return value, value
    total = lax.psum(lax.stop_gradient(local), axis_name)
    value, slope = jax.value_and_grad(self._form)(total)
    objective = sum(jnp.vdot(lax.stop_gradient(g), s)
                    for g, s in zip(jax.tree.leaves(slope), jax.tree.leaves(local)))
    return objective, value

  def __repr__(self):
    return f"Loss({self.name!r})"


def make_loss(name="ce", *, reduction="mean", class_weights=None, focal_gamma=2.0):
  """The Loss named by `name` ('ce', 'dice', 'ce+0.5*dice', ...; `parse`)."""
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction={reduction!r}; valid: {REDUCTIONS}")
  return Loss(name, parse(name), Options(reduction, class_weights, float(focal_gamma)))
