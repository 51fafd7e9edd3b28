"""Boundary F1 (BF) against a brute-force implementation of its definition."""
import math

import numpy as np
import pytest

from fcnjax import metrics


def contour_points(mask, valid):
  """Mask pixels with a 4-neighbour inside the image that is not in the mask."""
  h, w = mask.shape
  points = []
  for y in range(h):
    for x in range(w):
      if not mask[y, x] or not valid[y, x]:
        continue
      for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        yy, xx = y + dy, x + dx
        if 0 <= yy < h and 0 <= xx < w and not mask[yy, xx]:
          points.append((y, x))
          break
  return np.array(points, np.float64).reshape(-1, 2)


def bf_brute_force(label, pred, num_classes, tol):
  valid = label != 255
  out = np.full(num_classes, np.nan)
  for c in range(num_classes):
    t, p = (label == c) & valid, (pred == c) & valid
    if not t.any() and not p.any():
      continue
    g, q = contour_points(t, valid), contour_points(p, valid)
    if len(g) == 0 or len(q) == 0:
      out[c] = 1.0 if len(g) == len(q) == 0 else 0.0
      continue
    dist = np.sqrt(((g[:, None] - q[None]) ** 2).sum(-1))  # (|G|, |P|)
    precision = np.mean(dist.min(0) <= tol)
    recall = np.mean(dist.min(1) <= tol)
    out[c] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
  return out


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5, 3.0])
def test_boundary_f1_equals_brute_force(tol):
  rng = np.random.default_rng(int(tol * 10))
  for _ in range(5):
    label = np.zeros((24, 20), np.int64)
    label[3:15, 4:12] = 1
    label[10:20, 9:18] = 2
    pred = label.copy()
    pred[rng.integers(0, 24, 30), rng.integers(0, 20, 30)] = rng.integers(0, 4, 30)
    pred = np.roll(pred, rng.integers(-2, 3), axis=1)
    label[rng.integers(0, 24, 5), rng.integers(0, 20, 5)] = 255
    np.testing.assert_allclose(metrics.boundary_f1(label, pred, 4, tol),
                               bf_brute_force(label, pred, 4, tol), rtol=1e-12)


def test_boundary_f1_edge_cases():
  label = np.zeros((8, 8), np.int64)
  label[2:6, 2:6] = 1
  perfect = metrics.boundary_f1(label, label, 3, 0.0)
  assert perfect[0] == perfect[1] == 1.0 and math.isnan(perfect[2])
  shifted = np.roll(label, 1, axis=1)
  assert metrics.boundary_f1(label, shifted, 3, 0.0)[1] < 1.0
  assert metrics.boundary_f1(label, shifted, 3, 1.0)[1] == 1.0  # within one pixel
  assert metrics.boundary_f1(label, np.zeros_like(label), 2, 0.0)[1] == 0.0  # class missed


def test_mean_boundary_f1_and_tolerance():
  assert metrics.bf_tolerance(300, 400) == pytest.approx(0.0075 * 500)
  labels = np.zeros((2, 8, 8), np.int64)
  labels[:, 2:6, 2:6] = 1
  preds = labels.copy()
  preds[1] = 0
  per_image = [np.nanmean(metrics.boundary_f1(l, p, 2, 0.5)) for l, p in zip(labels, preds)]
  assert metrics.mean_boundary_f1(labels, preds, 2, 0.5) == pytest.approx(np.mean(per_image))


def within_brute_force(mask, tol):
  """Pixels with a True pixel of `mask` at distance <= tol (every pair measured)."""
  points = np.argwhere(mask).astype(np.float64)
  grid = np.stack(np.meshgrid(*map(np.arange, mask.shape), indexing="ij"), -1)
  if not len(points):
    return np.zeros(mask.shape, bool)
  dist = np.sqrt(((grid[:, :, None] - points[None, None]) ** 2).sum(-1)).min(-1)
  return dist <= tol


@pytest.mark.parametrize("tol", [0.0, 0.68, 1.0, math.sqrt(2), 2.0, math.sqrt(5), 3.75])
def test_within_and_boundary_f1_are_exactly_their_definitions(tol):
  """The disk dilation equals every-pair distances bit for bit (tolerances on and
  between the lattice's distances), so BF's counts, and its floats, are exact."""
  rng = np.random.default_rng(7)
  masks = rng.random((3, 19, 23)) < 0.04
  want = np.stack([within_brute_force(m, tol) for m in masks])
  np.testing.assert_array_equal(metrics.within(masks, tol), want)
  label = rng.integers(0, 5, (19, 23))
  label[rng.random((19, 23)) < 0.1] = 255
  pred = np.where(rng.random((19, 23)) < 0.7, label, rng.integers(0, 5, (19, 23)))
  pred[pred == 255] = 0
  np.testing.assert_array_equal(metrics.boundary_f1(label, pred, 6, tol),
                                bf_brute_force(label, pred, 6, tol))
