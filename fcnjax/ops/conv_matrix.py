"""Convolution as a matrix, transpose convolution as its transpose (1-D).

A 1-D convolution (cross-correlation, as in deep learning) with filter w,
stride s and zero padding p is linear in its input: conv_1d(a) == X @ a with
X[i, i*s + k - p] = w[k]. The transpose convolution is X^T @ a: every input
scatters a copy of the filter, overlapping copies are summed and the output is
longer than the input. It is also the vector-Jacobian product of conv_1d.

These are reference definitions in numpy; they accept object arrays, so a
filter of sympy symbols gives the symbolic matrix.
"""
import numpy as np


def conv_output_length(length, kernel_size, stride=1, padding=0):
  return (length + 2 * padding - kernel_size) // stride + 1


def conv_1d(a, kernel, stride=1, padding=0):
  """out[i] = sum_k a[i*s + k - p] * w[k] (zero padding); shape (out_len,)."""
  a, kernel = np.asarray(a), np.asarray(kernel)
  a = np.concatenate([np.zeros(padding, a.dtype), a, np.zeros(padding, a.dtype)])
  n_out = conv_output_length(len(a) - 2 * padding, len(kernel), stride, padding)
  return np.array([(a[i * stride:i * stride + len(kernel)] * kernel).sum()
                   for i in range(n_out)])


def conv_matrix_1d(kernel, length, stride=1, padding=0):
  """The (out_len, length) matrix X with conv_1d(a) == X @ a."""
  kernel = np.asarray(kernel)
  n_out = conv_output_length(length, len(kernel), stride, padding)
  if n_out <= 0:
    raise ValueError(f"kernel {len(kernel)} longer than padded length")
  x = np.zeros((n_out, length), dtype=kernel.dtype)
  for i in range(n_out):
    for k, wk in enumerate(kernel):
      j = i * stride + k - padding
      if 0 <= j < length:
        x[i, j] = x[i, j] + wk
  return x


def transpose_conv_1d(a, kernel, stride=1, padding=0, length=None):
  """Scatter definition: y[i*s + k - p] += a[i] * w[k].

  The natural output length is (n-1)*s - 2p + k. Pass `length` (the input
  length of the forward conv) to get exactly X^T @ a: the output is extended
  at the end, like PyTorch's `output_padding` (scatters landing there are kept).
  """
  a, kernel = np.asarray(a), np.asarray(kernel)
  natural = (len(a) - 1) * stride - 2 * padding + len(kernel)
  length = natural if length is None else length
  if length < natural:
    raise ValueError(f"length {length} shorter than the transpose output {natural}")
  y = np.zeros(length, dtype=np.result_type(a.dtype, kernel.dtype))
  for i, ai in enumerate(a):
    for k, wk in enumerate(kernel):
      j = i * stride + k - padding
      if 0 <= j < length:
        y[j] = y[j] + ai * wk
  return y
