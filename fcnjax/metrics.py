"""Segmentation metrics: confusion matrix, FCN scores, Boundary IoU, BF; the
counts every reported score is formed from (`counts`, `scores`).

Conventions: labels (N, H, W) int with 255 = ignore; predictions (N, H, W)
int; confusion matrices (C, C) with rows = truth, columns = prediction.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnjax.data.palette import IGNORE_INDEX


def _check_range(name, values, num_classes, allowed_extra):
  """Raise if concrete `values` hold ids outside [0, C) and `allowed_extra`."""
  allowed = np.r_[np.arange(num_classes), allowed_extra]
  bad = np.setdiff1d(np.unique(np.asarray(values)), allowed)
  if bad.size:
    extra = f" or the ignore label {allowed_extra[0]}" if allowed_extra else ""
    raise ValueError(f"{name} hold values {bad[:10].tolist()} outside "
                     f"[0, {num_classes}){extra}; check num_classes and the data")


def confusion_matrix(labels, preds, num_classes, ignore_index=IGNORE_INDEX):
  """(C, C) int32 counts of (truth, prediction) pairs over non-ignored pixels.

  labels, preds: integer arrays of the same shape, e.g. (N, H, W). Rows are
  truth, columns prediction; pixels with label == ignore_index are skipped.
  On concrete input (numpy or jax arrays) labels outside [0, C) other than
  ignore_index, and predictions outside [0, C), raise ValueError; on traced
  input inside jit such pixels are skipped. num_classes must be static.
  """
  if np.shape(labels) != np.shape(preds):
    raise ValueError(f"labels {np.shape(labels)} and preds {np.shape(preds)} "
                     "must have the same shape")
  if not isinstance(labels, jax.core.Tracer):
    _check_range("labels", labels, num_classes, [ignore_index])
  if not isinstance(preds, jax.core.Tracer):
    _check_range("preds", preds, num_classes, [])
  labels = jnp.asarray(labels).reshape(-1).astype(jnp.int32)
  preds = jnp.asarray(preds).reshape(-1).astype(jnp.int32)
  valid = ((labels >= 0) & (labels < num_classes) & (labels != ignore_index)
           & (preds >= 0) & (preds < num_classes))
  index = jnp.where(valid, labels * num_classes + preds, 0)
  hist = jnp.bincount(index, weights=valid.astype(jnp.int32), length=num_classes ** 2)
  return hist.reshape(num_classes, num_classes).astype(jnp.int32)


def nanmean(values):
  """Mean of the finite values (NaN if none): the class and image means."""
  finite = np.isfinite(values)
  return float(values[finite].mean()) if finite.any() else float("nan")


def segmentation_scores(hist):
  """The FCN reference `score.py` scores from a (C, C) confusion matrix.

  With diag = diag(hist), row_c = truth count, col_c = prediction count:
  pixel_acc = sum(diag) / sum(hist); acc_c = diag_c / row_c;
  IoU_c = diag_c / (row_c + col_c - diag_c); mean_acc, mean_iou = nanmean
  (a class absent from truth and prediction has IoU NaN and is skipped; one
  absent from truth only has acc NaN); fw_iou = sum_c (row_c / sum(hist)) *
  IoU_c over classes present in the truth. Returns python floats and
  per_class_iou, a list of C floats. An empty hist gives NaN scores.
  """
  hist = np.asarray(hist, np.float64)
  if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
    raise ValueError(f"hist must be a square (C, C) matrix, got shape {hist.shape}")
  diag, rows, cols = np.diag(hist), hist.sum(1), hist.sum(0)
  total = hist.sum()
  with np.errstate(divide="ignore", invalid="ignore"):
    acc = diag / rows
    iou = diag / (rows + cols - diag)
    freq = rows / total
  present = rows > 0
  return {"pixel_acc": float(diag.sum() / total) if total > 0 else float("nan"),
          "mean_acc": nanmean(acc),
          "mean_iou": nanmean(iou),
          "fw_iou": float((freq[present] * iou[present]).sum()) if total > 0 else float("nan"),
          "per_class_iou": [float(v) for v in iou]}


def median_frequency_weights(label_maps, num_classes, ignore_index=IGNORE_INDEX):
  """SegNet's median-frequency class balancing: w_c = median_f / f_c, (C,) float32.

  f_c = (pixels of class c) / (valid pixels of the images in which c appears),
  over an iterable of (H, W) integer label maps; the median is over the
  classes that appear; a class that never appears gets weight 0.
  """
  count = np.zeros(num_classes, np.int64)
  present_total = np.zeros(num_classes, np.int64)
  for labels in label_maps:
    labels = np.asarray(labels)
    valid = labels[labels != ignore_index]
    _check_range("labels", valid, num_classes, ())
    per_class = np.bincount(valid.ravel(), minlength=num_classes)
    count += per_class
    present_total += np.where(per_class > 0, valid.size, 0)
  seen = present_total > 0
  if not seen.any():
    raise ValueError("median_frequency_weights: no labelled pixel")
  freq = np.where(seen, count / np.maximum(present_total, 1), 0.0)
  return np.where(seen, np.median(freq[seen]) / np.where(seen, freq, 1.0), 0.0).astype(np.float32)


def _boundary(mask, width):
  """mask (N, H, W, C) bool -> its pixels within `width` of the mask's edge.

  mask minus its erosion by a (2w+1)^2 square; outside the image counts as
  inside (min-pooling pads with the identity 1), so the image edge is not a
  boundary.
  """
  k = 2 * width + 1
  eroded = lax.reduce_window(mask.astype(jnp.int8), jnp.int8(1), lax.min,
                             (1, k, k, 1), (1, 1, 1, 1), "SAME")
  return mask & (eroded == 0)


def boundary_counts(labels, preds, num_classes, width=2, ignore_index=IGNORE_INDEX):
  """Boundary IoU (Cheng et al. 2021) counts per class, summable over batches.

  labels, preds: (N, H, W) int. For class c, G_d / P_d = pixels of the truth /
  prediction mask of c within `width` pixels (Chebyshev distance) of the
  mask's contour. Ignored pixels belong to no truth mask (so a class next to
  the ignore band has its contour there) and are excluded from both G_d and
  P_d. Returns (|G_d & P_d|, |G_d | P_d|), (C,) int32 each. jit-able with
  static num_classes and width; sum the counts over batches, devices, hosts.
  """
  labels, preds = jnp.asarray(labels), jnp.asarray(preds)
  if labels.ndim != 3 or labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} must both be (N, H, W)")
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  valid = (labels != ignore_index)[..., None]
  classes = jnp.arange(num_classes)
  truth = _boundary(labels[..., None] == classes, width) & valid
  pred = _boundary(preds[..., None] == classes, width) & valid
  inter = jnp.sum(truth & pred, axis=(0, 1, 2), dtype=jnp.int32)
  union = jnp.sum(truth | pred, axis=(0, 1, 2), dtype=jnp.int32)
  return inter, union


def counts(labels, preds, num_classes, width=2, ignore_index=IGNORE_INDEX):
  """The summable counts every reported score comes from (training's
  evaluation, fcnjax-evaluate, tiled inference, the studies): {'hist':
  `confusion_matrix`, 'boundary_inter' / 'boundary_union': `boundary_counts`}.
  labels, preds (N, H, W) int; jit-able with static num_classes and width."""
  inter, union = boundary_counts(labels, preds, num_classes, width, ignore_index)
  return {"hist": confusion_matrix(labels, preds, num_classes, ignore_index),
          "boundary_inter": inter, "boundary_union": union}


def scores(total):
  """Scores from `counts` summed over a split: `segmentation_scores`, the
  per-class and mean Boundary IoU, and the number of scored pixels."""
  out = segmentation_scores(np.asarray(total["hist"]))
  biou = boundary_iou(total["boundary_inter"], total["boundary_union"])
  out["per_class_boundary_iou"] = [float(v) for v in biou]
  out["boundary_iou"] = nanmean(biou)
  out["num_pixels"] = int(np.sum(total["hist"]))
  return out


def boundary_iou(intersection, union):
  """Per-class Boundary IoU = intersection / union, (C,) float64, NaN where union == 0."""
  intersection = np.asarray(intersection, np.float64)
  union = np.asarray(union, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, intersection / union, np.nan)


def mean_boundary_iou(intersection, union):
  """Mean of boundary_iou over classes with a non-empty union (NaN if none)."""
  return nanmean(boundary_iou(intersection, union))


def boundary_map(mask, valid=None):
  """(..., H, W) bool -> its inner contour: mask pixels with a 4-neighbour outside
  the mask (outside the image counts as inside, so the image edge is no
  contour); `valid` (broadcastable) bool drops the pixels it marks False."""
  mask = np.asarray(mask, bool)
  padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
  inside = (padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2]
            & padded[..., 1:-1, 2:])
  edge = mask & ~inside
  return edge if valid is None else edge & valid


def within(mask, tolerance):
  """(..., H, W) bool: the pixels at Euclidean distance <= tolerance from a True
  pixel of `mask` (distances compared as `scipy.ndimage.distance_transform_edt`
  gives them: sqrt of the integer squared offset). Row by row of the disk: each
  offset row dy dilates along x by its half-width, then shifts by dy."""
  from scipy import ndimage
  mask = np.asarray(mask, bool)
  out = np.zeros(mask.shape, bool)
  reach = int(math.floor(tolerance)) if tolerance >= 0 else -1
  h = mask.shape[-2]
  for dy in range(-reach, reach + 1):
    half = max(dx for dx in range(reach + 1) if math.sqrt(dy * dy + dx * dx) <= tolerance)
    rows = ndimage.maximum_filter1d(mask, 2 * half + 1, axis=-1, mode="constant") \
        if half else mask
    if dy >= 0:
      out[..., :h - dy, :] |= rows[..., dy:, :]
    else:
      out[..., -dy:, :] |= rows[..., :h + dy, :]
  return out


def bf_tolerance(height, width, fraction=0.0075):
  """SegNet's BF distance tolerance: 0.75 % of the image diagonal, in pixels."""
  return fraction * math.hypot(height, width)


def boundary_f1(label, pred, num_classes, tolerance=None, ignore_index=IGNORE_INDEX):
  """Per-class boundary F1 (BF, Csurka et al. 2013; SegNet's boundary measure)
  of one image: (C,) float64, NaN for a class absent from truth and prediction.

  label, pred: (H, W) int. For class c, B_g / B_p are the contours
  (`boundary_map`) of its truth / predicted mask, ignored pixels excluded;
  precision = share of B_p within `tolerance` (Euclidean, pixels; default
  `bf_tolerance`) of B_g, recall = share of B_g within it of B_p, F1 their
  harmonic mean (0 when one contour is empty and the other is not).
  """
  label, pred = np.asarray(label), np.asarray(pred)
  if label.ndim != 2 or label.shape != pred.shape:
    raise ValueError(f"label {label.shape} and pred {pred.shape} must both be (H, W)")
  tolerance = bf_tolerance(*label.shape) if tolerance is None else tolerance
  valid = label != ignore_index
  scores = np.full(num_classes, np.nan)
  present = np.intersect1d(np.arange(num_classes), np.union1d(label[valid], pred[valid]))
  if not len(present):
    return scores
  classes = present[:, None, None]  # the classes in truth or prediction, (K, 1, 1)
  bg = boundary_map((label == classes) & valid, valid)  # (K, H, W) contours
  bp = boundary_map((pred == classes) & valid, valid)
  n_g, n_p = bg.sum((1, 2)), bp.sum((1, 2))
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = (bp & within(bg, tolerance)).sum((1, 2)) / n_p  # B_p near B_g
    recall = (bg & within(bp, tolerance)).sum((1, 2)) / n_g
    total = precision + recall
    f1 = np.where(total > 0, 2 * precision * recall / total, 0.0)
  scores[present] = np.where((n_g > 0) & (n_p > 0), f1, (n_g > 0) == (n_p > 0))
  return scores


def mean_boundary_f1(labels, preds, num_classes, tolerance=None, ignore_index=IGNORE_INDEX):
  """BF of a set of images: per image the mean of `boundary_f1` over its
  classes (NaNs skipped), then the mean over images. labels, preds (N, H, W)."""
  return nanmean(np.asarray(boundary_f1_per_image(labels, preds, num_classes, tolerance,
                                                   ignore_index)))


def boundary_f1_per_image(labels, preds, num_classes, tolerance=None, ignore_index=IGNORE_INDEX):
  """[the mean of `boundary_f1` over each image's classes (NaN: none scored)]
  for labels, preds (N, H, W): a list to extend batch by batch."""
  return [nanmean(boundary_f1(l, p, num_classes, tolerance, ignore_index))
          for l, p in zip(labels, preds)]
