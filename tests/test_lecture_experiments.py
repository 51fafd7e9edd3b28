"""The lecture's experiment scripts: transpose conv as X^T, sliding window vs FCN cost."""
import importlib.util
import os

import numpy as np
import pytest
import sympy
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
x, y, z, a, b, c, d = sympy.symbols("x y z a b c d")


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def tcm():
  return _load("transpose_conv_as_matrix")


@pytest.fixture(scope="module")
def swf():
  return _load("sliding_window_vs_fcn")


def test_one_d_examples_match_the_lecture(tcm):
  ex = tcm.one_d_examples()
  s1, s2 = ex["stride 1, padding 1"], ex["stride 2, padding 1"]
  # Independent definition: row i of X holds the filter at columns i*s - p .. i*s - p + 2.
  banded = sympy.Matrix(4, 4, lambda i, j: {-1: x, 0: y, 1: z}.get(j - i, 0))
  assert s1["X"] == banded
  assert s1["conv"] == sympy.Matrix([a * y + b * z, a * x + b * y + c * z,
                                     b * x + c * y + d * z, c * x + d * y])
  assert s2["X"] == sympy.Matrix([[x, y, z, 0, 0, 0], [0, 0, x, y, z, 0]])
  expected = sympy.Matrix([a * x, a * y, a * z + b * x, b * y, b * z, 0])
  assert (s2["transpose"] - expected).expand() == sympy.zeros(6, 1)
  assert s2["conv"] == sympy.Matrix([a * y + b * z, b * x + c * y + d * z])


@pytest.mark.parametrize("ksize,stride,padding", [(3, 1, 1), (4, 2, 1), (3, 2, 1), (16, 8, 4)])
def test_transpose_conv_is_the_adjoint(tcm, ksize, stride, padding):
  inner, vjp = tcm.adjoint_error(ksize, stride, padding, size=4, seed=ksize)
  assert inner < 1e-4 and vjp < 1e-4


def test_adjoint_check_catches_a_wrong_kernel_orientation(tcm, monkeypatch):
  """Negative control: the flipped kernel is not the adjoint of the strided conv."""
  transpose_conv = tcm.up.transpose_conv
  monkeypatch.setattr(tcm.up, "transpose_conv",
                      lambda v, k, s, p: transpose_conv(v, k[::-1, ::-1], s, p))
  inner, vjp = tcm.adjoint_error(4, 2, 1, size=4)
  assert max(inner, vjp) > 1e-2


def test_conv_matrix_figure_is_written(tcm, tmp_path):
  path = tmp_path / "conv_matrix.png"
  tcm.plot_examples(tcm.one_d_examples(), str(path))
  with Image.open(path) as im:
    assert im.size[0] > 400 and im.size[1] > 300


def test_cost_reads_flops_and_bytes(swf):
  out = swf.cost(lambda u, v: u @ v, np.ones((8, 16), np.float32), np.ones((16, 4), np.float32))
  assert out["flops"] == 2 * 8 * 16 * 4
  assert out["bytes accessed"] >= 4 * (8 * 16 + 16 * 4 + 8 * 4)


def test_fcn_costs_fewer_flops_and_the_ratio_grows_with_size(swf):
  small, large = (swf.path_costs(s, classes=3, patch=7, widths=(4, 8), hidden=8) for s in (12, 24))
  for costs in (small, large):
    assert costs["fcn"]["flops"] < costs["sliding"]["flops"]
    assert costs["fcn"]["bytes accessed"] < costs["sliding"]["bytes accessed"]
  ratio = [c["sliding"]["flops"] / c["fcn"]["flops"] for c in (small, large)]
  assert ratio[1] > ratio[0]


def test_compare_identical_scores_and_figure(swf, tmp_path):
  rows = [swf.compare(s, classes=3, patch=7, widths=(4, 8), hidden=8, repeats=1) for s in (8, 12)]
  for row in rows:
    assert row["max_abs_diff"] < 1e-4 and row["same_argmax"]
    assert row["flops_ratio"] > 1
  assert "12x12" in swf.format_table(rows)
  path = tmp_path / "sliding_window_vs_fcn.png"
  swf.plot(rows, str(path))
  with Image.open(path) as im:
    assert im.size[0] > 400
