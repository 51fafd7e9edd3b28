"""Convolution as a matrix X; transpose convolution as X^T (the lecture's 1-D example)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from fcnjax.ops import conv_matrix as cm
from fcnjax.ops import upsample as up

x, y, z, a, b, c, d = sympy.symbols("x y z a b c d")


def test_lecture_stride1_padding1_matrix():
  """kernel (x, y, z), stride 1, padding 1 on (a, b, c, d): a 4x4 banded matrix."""
  X = cm.conv_matrix_1d(np.array([x, y, z], dtype=object), 4, stride=1, padding=1)
  expected = sympy.Matrix([[y, z, 0, 0], [x, y, z, 0], [0, x, y, z], [0, 0, x, y]])
  assert sympy.Matrix(X) == expected
  out = cm.conv_1d(np.array([a, b, c, d], dtype=object), np.array([x, y, z], dtype=object), 1, 1)
  assert [sympy.expand(e) for e in out] == [sympy.expand(e) for e in sympy.Matrix(X) * sympy.Matrix([a, b, c, d])]


def test_lecture_stride2_transpose_is_longer_and_sums_overlaps():
  """Stride 2 on the padded length-6 input: X is 2x6, X^T maps length 2 -> 6."""
  kernel = np.array([x, y, z], dtype=object)
  X = cm.conv_matrix_1d(kernel, 6, stride=2, padding=0)
  assert sympy.Matrix(X) == sympy.Matrix([[x, y, z, 0, 0, 0], [0, 0, x, y, z, 0]])
  out = sympy.Matrix(X).T * sympy.Matrix([a, b])
  assert list(out) == [a * x, a * y, a * z + b * x, b * y, b * z, 0]
  scattered = cm.transpose_conv_1d(np.array([a, b], dtype=object), kernel, 2, 0, length=6)
  assert [sympy.expand(e) for e in scattered] == list(out)
  natural = cm.transpose_conv_1d(np.array([a, b], dtype=object), kernel, 2, 0)
  assert len(natural) == 5 and sympy.expand(natural[2] - (a * z + b * x)) == 0


@pytest.mark.parametrize("k,length,stride,padding", [(3, 4, 1, 1), (3, 6, 2, 1), (4, 8, 2, 1),
                                                     (3, 7, 2, 0), (5, 9, 3, 2), (2, 5, 2, 0)])
def test_matrix_equals_conv_and_transpose_equals_xt(k, length, stride, padding):
  rng = np.random.default_rng(k * 100 + length)
  w = rng.normal(size=k)
  a = rng.normal(size=length)
  X = cm.conv_matrix_1d(w, length, stride, padding)
  np.testing.assert_allclose(X @ a, cm.conv_1d(a, w, stride, padding))
  v = rng.normal(size=X.shape[0])
  np.testing.assert_allclose(cm.transpose_conv_1d(v, w, stride, padding, length=length), X.T @ v)


@pytest.mark.parametrize("k,length,stride,padding", [(3, 6, 2, 1), (4, 8, 2, 1), (3, 5, 1, 1)])
def test_transpose_is_vjp_and_matches_2d_op(k, length, stride, padding):
  rng = np.random.default_rng(1)
  w = rng.normal(size=k).astype(np.float32)
  a = rng.normal(size=length).astype(np.float32)

  def conv(u):
    return jax.lax.conv_general_dilated(u[None, :, None], jnp.asarray(w)[:, None, None],
                                        (stride,), [(padding, padding)],
                                        dimension_numbers=("NWC", "WIO", "NWC"))[0, :, 0]

  out, vjp = jax.vjp(conv, jnp.asarray(a))
  v = rng.normal(size=out.shape).astype(np.float32)
  expected = cm.transpose_conv_1d(v, w, stride, padding, length=length)
  np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(v))[0]), expected, rtol=1e-5, atol=1e-5)
  # The 2-D op on a 1-pixel-wide image is the same scatter.
  y2d = up.transpose_conv(jnp.asarray(v)[None, :, None, None],
                          jnp.asarray(w)[:, None, None, None], (stride, 1), (padding, 0))
  natural = cm.transpose_conv_1d(v, w, stride, padding)
  np.testing.assert_allclose(np.asarray(y2d)[0, :, 0, 0], natural, rtol=1e-5, atol=1e-5)


def test_errors():
  with pytest.raises(ValueError):
    cm.conv_matrix_1d(np.ones(5), 2)
  with pytest.raises(ValueError, match="shorter"):
    cm.transpose_conv_1d(np.ones(2), np.ones(3), 2, 0, length=4)
