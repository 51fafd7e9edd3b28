"""experiments/kernel_taps.py's description of reassembly kernels, on kernels
whose answers follow from their definition: bilinear x2 and a fixed shift."""
import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def taps():
  spec = importlib.util.spec_from_file_location(
      "kernel_taps", os.path.join(ROOT, "experiments", "kernel_taps.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _kernels(weights_at, h=4, w=4, k=5):
  """(1, 2h, 2w, k*k) kernels: weights_at(i % 2, j % 2) = {(a, b): weight}."""
  out = np.zeros((1, 2 * h, 2 * w, k * k))
  for i in range(2 * h):
    for j in range(2 * w):
      for (a, b), v in weights_at(i % 2, j % 2).items():
        out[0, i, j, (a + k // 2) * k + b + k // 2] = v
  return out


def test_bilinear_x2(taps):
  # Half-pixel bilinear x2: phase 0 leans on the previous row/column, phase 1 on the next.
  def bilinear(pi, pj):
    di, dj = (-1 if pi == 0 else 1), (-1 if pj == 0 else 1)
    return {(0, 0): 9 / 16, (di, 0): 3 / 16, (0, dj): 3 / 16, (di, dj): 1 / 16}
  row = taps.describe(_kernels(bilinear), (4, 4))
  assert row["own pixel weight"] == "0.562"
  assert row["argmax own / ring 1 / outer"] == "1.00 / 0.00 / 0.00"
  assert row["argmax at its phase's mode"] == "1.00"
  assert row["tap distance"] == f"{7 / 16:.2f}"
  # Off the 4x4 map: output row 0 reads row -1 (3/16 + 1/16), row 7 reads row 4;
  # columns alike; a corner loses its three outer taps (3 + 3 + 1 of 16).
  off = np.zeros((8, 8))
  off[[0, 7], :] += 4 / 16
  off[:, [0, 7]] += 4 / 16
  off[[0, 0, 7, 7], [0, 7, 0, 7]] -= 1 / 16
  assert row["weight off the map"] == f"{off.mean():.3f}"
  p = np.array([9, 3, 3, 1]) / 16
  assert row["entropy"] == f"{-(p * np.log(p)).sum() / np.log(25):.3f}"


def test_fixed_shift_reads_zeros(taps):
  row = taps.describe(_kernels(lambda pi, pj: {(2, 2): 1.0}), (4, 4))
  # i // 2 + 2 lies on the 4-row map for i // 2 < 2 only: a quarter of the outputs.
  assert row["weight off the map"] == "0.750"
  assert row["argmax own / ring 1 / outer"] == "0.00 / 0.00 / 1.00"
  assert row["argmax at its phase's mode"] == "1.00"
  assert row["tap distance"] == "2.00"
  assert row["entropy"] == "0.000"


def test_content_following_taps_have_a_low_mode_share(taps):
  rng = np.random.default_rng(0)
  k = np.zeros((1, 64, 64, 25))
  k[0, np.arange(64)[:, None], np.arange(64)[None, :], rng.integers(0, 25, (64, 64))] = 1.0
  share = float(taps.describe(k, (32, 32))["argmax at its phase's mode"])
  assert share < 0.1  # 25 taps drawn uniformly: about 1/25 each, the mode a little above


def test_label_agreement_of_a_half_split_image(taps):
  labels = np.zeros((1, 8, 8), int)
  labels[:, :, 4:] = 1  # left half class 0, right half class 1
  agree = taps.label_agreement(labels, 2, (4, 4), k_up=3)  # 4x4 outputs from 2x2 blocks
  tap = lambda a, b: agree[0, :, :, (a + 1) * 3 + b + 1]  # noqa: E731
  np.testing.assert_array_equal(tap(0, 0), 1.0)  # each 2x2 block lies in its 4x4 block
  np.testing.assert_array_equal(tap(0, -1), 0.0)  # the other half, or off the map
  np.testing.assert_array_equal(tap(0, 1), 0.0)
  np.testing.assert_array_equal(tap(-1, 0), np.repeat([[0.0], [0.0], [1.0], [1.0]], 4, 1))


def test_bilinear_kernels_reproduce_bilinear_x2(taps):
  import jax
  x = np.random.default_rng(1).normal(size=(1, 4, 4, 1))
  k = taps.bilinear_kernels(8, 8, k_up=5)
  padded = np.pad(x[0, :, :, 0], 2)
  out = np.array([[sum(k[0, i, j, t] * padded[i // 2 + t // 5, j // 2 + t % 5] for t in range(25))
                   for j in range(8)] for i in range(8)])
  # Away from the border (where the window pads with zeros and resize clamps) they agree.
  want = np.asarray(jax.image.resize(x, (1, 8, 8, 1), "bilinear"))[0, :, :, 0]
  np.testing.assert_allclose(out[1:-1, 1:-1], want[1:-1, 1:-1], rtol=1e-6, atol=1e-6)


def test_agreement_columns(taps):
  labels = np.zeros((1, 16, 16), int)
  labels[:, :, 8:] = 1
  agree = taps.label_agreement(labels, 2, (8, 8))
  own = np.eye(25)[12] * np.ones((1, 8, 8, 1))
  row = taps.describe(own, (4, 4), agree)
  # The own pixel always shares the class here (each 2x2 block lies in its 4x4 block);
  # bilinear loses its outside-facing taps at the border and across the split.
  kernel, bilinear, own_pixel = map(float, row["label agreement: kernel / bilinear / own pixel"]
                                    .split(" / "))
  assert kernel == own_pixel == 1.0
  b = taps.bilinear_kernels(8, 8)
  assert bilinear == float(f"{(b * agree).sum(-1).mean():.3f}") < 1.0
