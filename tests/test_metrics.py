"""Metrics against definitions: numpy loops, pixel sets, scipy erosion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from fcnjax import metrics

C = 5


def random_labels(rng, shape, num_classes=C, ignore_frac=0.1):
  labels = rng.integers(0, num_classes, shape)
  labels[rng.random(shape) < ignore_frac] = 255
  return labels


def loop_confusion(labels, preds, num_classes):
  hist = np.zeros((num_classes, num_classes), np.int64)
  for t, p in zip(labels.ravel(), preds.ravel()):
    if t != 255:
      hist[t, p] += 1
  return hist


# ---- confusion matrix ----

def test_confusion_matrix_matches_double_loop():
  rng = np.random.default_rng(0)
  labels = random_labels(rng, (3, 7, 9))
  preds = rng.integers(0, C, (3, 7, 9))
  expected = loop_confusion(labels, preds, C)
  hist = metrics.confusion_matrix(labels, preds, C)
  assert hist.shape == (C, C) and hist.dtype == jnp.int32
  np.testing.assert_array_equal(hist, expected)
  assert int(hist.sum()) == int((labels != 255).sum())


def test_confusion_matrix_inside_jit_skips_out_of_range():
  rng = np.random.default_rng(1)
  labels = random_labels(rng, (2, 6, 6))
  preds = rng.integers(0, C, (2, 6, 6))
  labels_bad, preds_bad = labels.copy(), preds.copy()
  labels_bad[0, 0, 0], preds_bad[1, 1, 1] = 7, C  # a bad label, a bad prediction
  keep = np.ones(labels.shape, bool)
  keep[0, 0, 0] = keep[1, 1, 1] = False
  expected = loop_confusion(np.where(keep, labels, 255), preds, C)
  fn = jax.jit(metrics.confusion_matrix, static_argnums=2)
  np.testing.assert_array_equal(fn(labels_bad, preds_bad, C), expected)


def test_confusion_matrix_custom_ignore_index():
  labels = np.array([[0, 1, 2], [2, 2, 0]])
  preds = np.array([[0, 2, 2], [1, 2, 0]])
  expected = loop_confusion(np.where(labels == 2, 255, labels), preds, 3)
  np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, 3, ignore_index=2),
                                expected)


@pytest.mark.parametrize("labels,preds,name", [
    (np.array([0, 1, 7]), np.array([0, 1, 1]), "labels"),
    (np.array([0, -1, 1]), np.array([0, 1, 1]), "labels"),
    (np.array([0, 1, 255]), np.array([0, 3, 1]), "preds"),
])
def test_confusion_matrix_rejects_bad_values(labels, preds, name):
  with pytest.raises(ValueError, match=name):
    metrics.confusion_matrix(labels, preds, 3)


def test_confusion_matrix_rejects_shape_mismatch():
  with pytest.raises(ValueError, match="same shape"):
    metrics.confusion_matrix(np.zeros((2, 3), int), np.zeros((3, 2), int), 3)


# ---- scores ----

def test_scores_hand_worked_2x2():
  # truth 0: 3 right, 1 called 1; truth 1: 2 called 0, 4 right.
  hist = np.array([[3, 1], [2, 4]])
  scores = metrics.segmentation_scores(hist)
  iou0, iou1 = 3 / (4 + 5 - 3), 4 / (6 + 5 - 4)
  assert scores["pixel_acc"] == pytest.approx(7 / 10)
  assert scores["mean_acc"] == pytest.approx((3 / 4 + 4 / 6) / 2)
  assert scores["per_class_iou"] == pytest.approx([iou0, iou1])
  assert scores["mean_iou"] == pytest.approx((iou0 + iou1) / 2)
  assert scores["fw_iou"] == pytest.approx(0.4 * iou0 + 0.6 * iou1)
  assert all(isinstance(scores[k], float) for k in ("pixel_acc", "mean_acc", "mean_iou"))


def test_scores_match_pixel_sets():
  rng = np.random.default_rng(2)
  labels = random_labels(rng, (2, 8, 8))
  preds = rng.integers(0, C, (2, 8, 8))
  scores = metrics.segmentation_scores(metrics.confusion_matrix(labels, preds, C))
  idx = np.arange(labels.size)
  valid = set(idx[labels.ravel() != 255])
  ious, accs, weights = [], [], []
  for c in range(C):
    truth = set(idx[labels.ravel() == c])
    pred = set(idx[preds.ravel() == c]) & valid
    ious.append(len(truth & pred) / len(truth | pred))
    accs.append(len(truth & pred) / len(truth))
    weights.append(len(truth) / len(valid))
  correct = sum(1 for i in valid if labels.ravel()[i] == preds.ravel()[i])
  assert scores["per_class_iou"] == pytest.approx(ious)
  assert scores["mean_iou"] == pytest.approx(np.mean(ious))
  assert scores["mean_acc"] == pytest.approx(np.mean(accs))
  assert scores["pixel_acc"] == pytest.approx(correct / len(valid))
  assert scores["fw_iou"] == pytest.approx(np.dot(weights, ious))


def test_scores_absent_classes_are_nan_and_skipped():
  # class 2 never appears; class 1 only predicted (IoU 0, acc NaN).
  hist = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]])
  scores = metrics.segmentation_scores(hist)
  iou = scores["per_class_iou"]
  assert iou[0] == pytest.approx(3 / 4) and iou[1] == 0.0 and np.isnan(iou[2])
  assert scores["mean_iou"] == pytest.approx((3 / 4 + 0) / 2)
  assert scores["mean_acc"] == pytest.approx(3 / 4)
  assert scores["fw_iou"] == pytest.approx(3 / 4)


def test_scores_empty_and_bad_shape():
  scores = metrics.segmentation_scores(np.zeros((3, 3)))
  assert all(np.isnan(scores[k]) for k in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"))
  with pytest.raises(ValueError, match="square"):
    metrics.segmentation_scores(np.zeros((3, 2)))


# ---- boundary IoU ----

def scipy_boundary_counts(labels, preds, num_classes, width):
  """Independent Boundary IoU: scipy binary erosion, border counted as inside."""
  structure = np.ones((2 * width + 1, 2 * width + 1), bool)
  inter, union = np.zeros(num_classes, int), np.zeros(num_classes, int)
  for t, p in zip(labels, preds):
    valid = t != 255
    for c in range(num_classes):
      regions = []
      for mask in (t == c, p == c):
        eroded = ndimage.binary_erosion(mask, structure, border_value=1)
        regions.append(mask & ~eroded & valid)
      inter[c] += (regions[0] & regions[1]).sum()
      union[c] += (regions[0] | regions[1]).sum()
  return inter, union


def random_blobs(rng, n, size, num_classes):
  """Smooth random label maps: argmax of blurred noise."""
  noise = rng.normal(size=(n, size, size, num_classes))
  noise = ndimage.gaussian_filter(noise, sigma=(0, 3, 3, 0))
  return noise.argmax(-1)


@pytest.mark.parametrize("width", [1, 2])
def test_boundary_counts_match_scipy(width):
  rng = np.random.default_rng(3)
  labels = random_blobs(rng, 2, 32, 3)
  preds = random_blobs(rng, 2, 32, 3)
  labels[:, 10:14, 5:20] = 255
  fn = jax.jit(metrics.boundary_counts, static_argnums=(2, 3))
  inter, union = fn(labels, preds, 3, width)
  exp_inter, exp_union = scipy_boundary_counts(labels, preds, 3, width)
  np.testing.assert_array_equal(inter, exp_inter)
  np.testing.assert_array_equal(union, exp_union)
  assert exp_union.min() > 0 and 0 < exp_inter.sum() < exp_union.sum()


def square_image(offset=0):
  labels = np.zeros((1, 40, 40), int)
  labels[0, 10:30, 10 + offset:30 + offset] = 1
  return labels


def test_boundary_iou_perfect_and_shifted():
  labels = square_image()
  inter, union = metrics.boundary_counts(labels, labels, 2, width=2)
  np.testing.assert_array_equal(metrics.boundary_iou(inter, union), [1.0, 1.0])
  assert metrics.mean_boundary_iou(inter, union) == 1.0
  # The image border is not a boundary: class 0's band is only around the square.
  assert int(union[0]) == 24 * 24 - 20 * 20

  shifted = square_image(offset=5)  # more than 2 * width pixels
  inter, union = metrics.boundary_counts(labels, shifted, 2, width=2)
  biou = metrics.boundary_iou(inter, union)
  mask_iou = metrics.segmentation_scores(metrics.confusion_matrix(labels, shifted, 2))
  # By hand: each 20x20 square has a 2-pixel band of 400 - 16 * 16 = 144 pixels;
  # after a 5-pixel shift only the top and bottom strips overlap, 4 rows x 15.
  assert biou[1] == pytest.approx(60 / (2 * 144 - 60))
  assert mask_iou["per_class_iou"][1] == pytest.approx(300 / 500)
  assert biou[1] < 0.5 * mask_iou["per_class_iou"][1]


def test_boundary_iou_nan_for_empty_union_and_summable():
  labels = np.zeros((2, 12, 12), int)
  labels[0, 3:8, 3:8] = 1
  preds = labels.copy()
  preds[1, 0:4, 0:4] = 1
  inter, union = metrics.boundary_counts(labels, preds, 3)
  biou = metrics.boundary_iou(inter, union)
  assert np.isnan(biou[2]) and np.isfinite(biou[:2]).all()
  parts = [metrics.boundary_counts(labels[i:i + 1], preds[i:i + 1], 3) for i in range(2)]
  np.testing.assert_array_equal(parts[0][0] + parts[1][0], inter)
  np.testing.assert_array_equal(parts[0][1] + parts[1][1], union)


def test_boundary_counts_bad_input():
  with pytest.raises(ValueError, match="width"):
    metrics.boundary_counts(np.zeros((1, 4, 4), int), np.zeros((1, 4, 4), int), 2, width=0)
  with pytest.raises(ValueError, match="N, H, W"):
    metrics.boundary_counts(np.zeros((4, 4), int), np.zeros((4, 4), int), 2)


def test_median_frequency_weights_hand_worked():
  # image A (4 px): 3 x class 0, 1 x class 1; image B (4 px, one ignored): 1 x 0, 2 x 2
  a = np.array([[0, 0], [0, 1]])
  b = np.array([[0, 2], [2, 255]])
  w = metrics.median_frequency_weights([a, b], num_classes=4)
  # f_0 = 4 / (4 + 3), f_1 = 1 / 4, f_2 = 2 / 3; class 3 never appears
  freq = np.array([4 / 7, 1 / 4, 2 / 3])
  np.testing.assert_allclose(w[:3], np.median(freq) / freq, rtol=1e-6)
  assert w[3] == 0 and w.dtype == np.float32
  with pytest.raises(ValueError, match="labels"):
    metrics.median_frequency_weights([np.array([[7]])], num_classes=4)


def test_weighted_cross_entropy_matches_numpy():
  from fcnjax.train import losses as loss_lib
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  labels = rng.integers(0, 5, size=(2, 3, 4))
  labels[0, 0, :2] = 255
  weights = rng.uniform(0.1, 3.0, 5).astype(np.float32)
  loss, count = loss_lib.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(labels),
                                         class_weights=weights)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  valid = labels != 255
  safe = np.where(valid, labels, 0)
  nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss, np.sum(np.where(valid, weights[safe] * nll, 0)), rtol=1e-5)
  assert count == valid.sum()
