"""Segmentation metrics: confusion matrix, FCN scores, Boundary IoU, clu metric.

Conventions: labels (N, H, W) int with 255 = ignore; predictions (N, H, W)
int; confusion matrices (C, C) with rows = truth, columns = prediction.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics
from jax import lax

IGNORE_INDEX = 255


def confusion_matrix(labels, preds, num_classes, ignore_index=IGNORE_INDEX):
  """(C, C) int32 counts of (truth, prediction) pairs over non-ignored pixels.

  Works on numpy input (labels outside [0, C) other than ignore_index raise)
  and on traced jnp input inside jit (such labels are skipped).
  """
  if isinstance(labels, np.ndarray):
    bad = np.setdiff1d(np.unique(labels), np.r_[np.arange(num_classes), ignore_index])
    if bad.size:
      raise ValueError(f"labels {bad.tolist()} outside [0, {num_classes}) and not "
                       f"the ignore label {ignore_index}")
  labels = jnp.asarray(labels).reshape(-1).astype(jnp.int32)
  preds = jnp.asarray(preds).reshape(-1).astype(jnp.int32)
  valid = (labels >= 0) & (labels < num_classes)
  index = jnp.where(valid, labels * num_classes + preds, 0)
  hist = jnp.bincount(index, weights=valid.astype(jnp.int32), length=num_classes ** 2)
  return hist.reshape(num_classes, num_classes).astype(jnp.int32)


def segmentation_scores(hist):
  """The FCN reference `score.py` scores from a (C, C) confusion matrix.

  pixel_acc = sum(diag) / sum(hist); per-class acc = diag / row sum;
  IoU_c = diag / (row_c + col_c - diag); mean_acc, mean_iou = nanmean (classes
  absent from truth and prediction are NaN and skipped);
  fw_iou = sum_c (row_c / total) * IoU_c over classes with a finite IoU.
  """
  hist = np.asarray(hist, np.float64)
  diag, rows, cols = np.diag(hist), hist.sum(1), hist.sum(0)
  with np.errstate(divide="ignore", invalid="ignore"):
    acc = diag / rows
    iou = diag / (rows + cols - diag)
  freq = rows / max(hist.sum(), 1)
  finite = np.isfinite(iou)
  nanmean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
  return {"pixel_acc": float(diag.sum() / max(hist.sum(), 1)),
          "mean_acc": nanmean(acc),
          "mean_iou": nanmean(iou),
          "fw_iou": float((freq[finite] * iou[finite]).sum()),
          "per_class_iou": [float(v) for v in iou]}


def _boundary(mask, width):
  """mask (N, H, W, C) bool -> pixels of mask within `width` of its edge.

  mask minus its erosion by a (2w+1)^2 square; outside the image counts as
  inside, so the image border is not a boundary.
  """
  k = 2 * width + 1
  eroded = lax.reduce_window(mask.astype(jnp.int8), jnp.int8(1), lax.min,
                             (1, k, k, 1), (1, 1, 1, 1), "SAME")
  return mask & (eroded == 0)


def boundary_counts(labels, preds, num_classes, width=2, ignore_index=IGNORE_INDEX):
  """Boundary IoU (Cheng et al. 2021) counts per class, summable over batches.

  For class c, G_d / P_d = the truth / prediction mask's pixels within `width`
  pixels of its contour. Returns (intersection, union) of G_d and P_d, (C,)
  int32 each, ignored pixels excluded. jit-able.
  """
  labels, preds = jnp.asarray(labels), jnp.asarray(preds)
  valid = (labels != ignore_index)[..., None]
  classes = jnp.arange(num_classes)
  truth = _boundary(labels[..., None] == classes, width) & valid
  pred = _boundary(preds[..., None] == classes, width) & valid
  inter = jnp.sum(truth & pred, axis=(0, 1, 2)).astype(jnp.int32)
  union = jnp.sum(truth | pred, axis=(0, 1, 2)).astype(jnp.int32)
  return inter, union


def boundary_iou(intersection, union):
  """Per-class Boundary IoU, NaN where the union is empty."""
  intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, intersection / union, np.nan)


def mean_boundary_iou(intersection, union):
  values = boundary_iou(intersection, union)
  return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
  """clu metric holding a (C, C) confusion matrix; merge sums, compute scores.

  Inside pmap / shard_map, psum `hist` over the device axis (or use
  `metric.reduce()` on a stacked metric) to combine devices.
  """
  hist: jnp.ndarray

  @classmethod
  def from_model_output(cls, *, labels, preds, num_classes, **_):
    return cls(hist=confusion_matrix(labels, preds, num_classes))

  def merge(self, other):
    return type(self)(hist=self.hist + other.hist)

  def reduce(self):
    return type(self)(hist=self.hist.sum(0) if self.hist.ndim == 3 else self.hist)

  def compute(self):
    return segmentation_scores(jax.device_get(self.hist))
