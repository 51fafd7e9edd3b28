"""Upsampling ops against numpy definitions and PyTorch reference ops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax import lax

from fcnjax.ops import crop as crop_ops
from fcnjax.ops import upsample as up

RNG = np.random.default_rng(0)


def _to_torch(x):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _from_torch(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _scatter_transpose_conv(x, kernel, stride, padding):
  """Numpy loop of the definition y[i*s + k - p] += x[i] * K[k] (2-D)."""
  n, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  full = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kw, cout))
  for i in range(h):
    for j in range(w):
      full[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
          "nc,hwco->nhwo", x[:, i, j], kernel)
  p = padding
  return full[:, p:full.shape[1] - p, p:full.shape[2] - p]


def test_nearest_matches_definition_and_torch():
  x = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
  y = np.asarray(up.nearest_upsample(jnp.asarray(x), 3))
  expected = np.repeat(np.repeat(x, 3, axis=1), 3, axis=2)
  np.testing.assert_array_equal(y, expected)
  ref = _from_torch(F.interpolate(_to_torch(x), scale_factor=3, mode="nearest"))
  np.testing.assert_array_equal(y, ref)


def test_bed_of_nails_top_left_zeros_elsewhere():
  x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
  y = np.asarray(up.bed_of_nails(jnp.asarray(x), 2))
  assert y.shape == (1, 6, 8, 2)
  expected = np.zeros_like(y)
  expected[:, ::2, ::2] = x
  np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("shape,window", [((2, 6, 8, 3), 2), ((1, 7, 9, 2), 2),
                                          ((1, 9, 12, 2), 3)])
def test_max_pool_switches_match_torch(shape, window):
  x = RNG.normal(size=shape).astype(np.float32)
  pooled, switches = up.max_pool_with_switches(jnp.asarray(x), window)
  assert switches.dtype == jnp.uint8
  assert switches.dtype.itemsize == 1 and switches.shape == pooled.shape
  tp, ti = F.max_pool2d(_to_torch(x), window, window, return_indices=True)
  np.testing.assert_array_equal(np.asarray(pooled), _from_torch(tp))
  # torch indices are flat positions in the H x W plane: convert our offsets.
  hp, wp = pooled.shape[1:3]
  rows = np.arange(hp)[:, None] * window + np.asarray(switches).transpose(0, 3, 1, 2) // window
  cols = np.arange(wp)[None, :] * window + np.asarray(switches).transpose(0, 3, 1, 2) % window
  np.testing.assert_array_equal(rows * shape[2] + cols, ti.numpy())
  unpooled = up.max_unpool(pooled, switches, window, output_size=shape[1:3])
  ref = F.max_unpool2d(tp, ti, window, window, output_size=shape[1:3])
  np.testing.assert_array_equal(np.asarray(unpooled), _from_torch(ref))


@pytest.mark.parametrize("shape,window,ceil_mode", [
    ((2, 6, 8, 3), 2, False), ((1, 7, 9, 2), 2, False), ((1, 7, 9, 2), 2, True),
    ((2, 9, 12, 2), 3, True), ((1, 10, 11, 2), 3, False)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_matches_torch_and_reduce_window_gradient(shape, window, ceil_mode, ties):
  x = RNG.normal(size=shape).astype(np.float32)
  if ties:  # few distinct values: most windows hold several equal maxima
    x = np.round(x).clip(-1, 1)
  pooled = up.max_pool(jnp.asarray(x), window, ceil_mode=ceil_mode)
  ref = F.max_pool2d(_to_torch(x), window, window, ceil_mode=ceil_mode)
  np.testing.assert_array_equal(np.asarray(pooled), _from_torch(ref))
  # Gradient: all to a window's first maximum, as select-and-scatter and torch.
  pads = ((0, -shape[1] % window), (0, -shape[2] % window)) if ceil_mode else "VALID"
  windowed = lambda v: lax.reduce_window(v, -jnp.inf, lax.max, (1, window, window, 1),
                                         (1, window, window, 1),
                                         pads if pads == "VALID" else ((0, 0), *pads, (0, 0)))
  cot = jnp.asarray(RNG.normal(size=pooled.shape).astype(np.float32))
  grad = jax.grad(lambda v: jnp.sum(up.max_pool(v, window, ceil_mode) * cot))(jnp.asarray(x))
  grad_rw = jax.grad(lambda v: jnp.sum(windowed(v) * cot))(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(grad), np.asarray(grad_rw))
  xt = _to_torch(x).requires_grad_()
  F.max_pool2d(xt, window, window, ceil_mode=ceil_mode).backward(
      _to_torch(np.asarray(cot)))
  np.testing.assert_array_equal(np.asarray(grad), _from_torch(xt.grad))


def test_max_unpool_puts_value_at_switch_numpy_loop():
  x = RNG.normal(size=(1, 4, 4, 1)).astype(np.float32)
  pooled, switches = up.max_pool_with_switches(jnp.asarray(x))
  y = np.asarray(up.max_unpool(pooled, switches))
  expected = np.zeros_like(x)
  for i in range(2):
    for j in range(2):
      block = x[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2, 0]
      di, dj = np.unravel_index(np.argmax(block), (2, 2))
      expected[0, 2 * i + di, 2 * j + dj, 0] = block.max()
  np.testing.assert_array_equal(y, expected)


def test_shared_switches_are_the_majority_offset_and_unpool_every_channel_there():
  switches = RNG.integers(0, 4, size=(2, 3, 5, 7)).astype(np.uint8)
  switches[0, 0, 0] = [0, 0, 1, 1, 2, 3, 3]  # a tie between 0, 1 and 3: the lowest, 0
  switches[0, 0, 1] = [2, 2, 2, 0, 1, 3, 3]  # 2 by majority
  shared = np.asarray(up.shared_switches(jnp.asarray(switches)))
  assert shared.shape == (2, 3, 5, 1) and shared.dtype == np.uint8
  for b, i, j in np.ndindex(2, 3, 5):
    counts = np.bincount(switches[b, i, j], minlength=4)
    assert shared[b, i, j, 0] == np.flatnonzero(counts == counts.max())[0]
  assert shared[0, 0, 0, 0] == 0 and shared[0, 0, 1, 0] == 2
  scores = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)  # other channels than the pool's
  y = np.asarray(up.max_unpool(jnp.asarray(scores), jnp.asarray(shared), output_size=(7, 11)))
  expected = np.zeros((2, 7, 11, 4), np.float32)
  for b, i, j in np.ndindex(2, 3, 5):
    o = shared[b, i, j, 0]
    expected[b, 2 * i + o // 2, 2 * j + o % 2] = scores[b, i, j]
  np.testing.assert_array_equal(y, expected)


def test_switch_bytes_per_pooled_element():
  x = jnp.asarray(RNG.normal(size=(2, 16, 16, 8)).astype(np.float32))
  pooled, switches = up.max_pool_with_switches(x)
  assert switches.nbytes / pooled.size == 1
  assert switches.nbytes * 8 == pooled.size * np.dtype(np.int64).itemsize


def test_max_unpool_gradient_routes_to_pooled():
  x = jnp.asarray(RNG.normal(size=(1, 4, 6, 2)).astype(np.float32))
  pooled, switches = up.max_pool_with_switches(x)
  g = jax.grad(lambda p: up.max_unpool(p, switches).sum())(pooled)
  np.testing.assert_array_equal(np.asarray(g), np.ones(pooled.shape))


def test_bilinear_kernel_is_fcn_upsample_filt():
  k = np.asarray(up.bilinear_kernel(4, 3))
  assert k.shape == (4, 4, 3, 3)
  # upsample_filt(4): factor 2, centre 1.5 -> 1-|i-1.5|/2 = [.25,.75,.75,.25]
  f1 = np.array([0.25, 0.75, 0.75, 0.25])
  for c in range(3):
    np.testing.assert_allclose(k[:, :, c, c], np.outer(f1, f1))
  off = k.copy()
  off[:, :, range(3), range(3)] = 0
  assert not off.any()
  # odd size 3: factor 2, centre 1 -> [.5, 1, .5]
  np.testing.assert_allclose(np.asarray(up.bilinear_kernel(3, 1))[:, :, 0, 0],
                             np.outer([.5, 1, .5], [.5, 1, .5]))


@pytest.mark.parametrize("stride,ksize,padding,cin,cout", [
    (2, 4, 1, 3, 5), (2, 3, 0, 2, 2), (3, 5, 2, 2, 3), (1, 3, 1, 2, 2), (1, 3, 0, 2, 3),
    (1, 7, 3, 3, 4), (8, 16, 4, 2, 3), (32, 64, 0, 2, 2), (2, 1, 0, 1, 1)])
def test_transpose_conv_matches_definition_and_torch(stride, ksize, padding, cin, cout):
  x = RNG.normal(size=(2, 3, 4, cin)).astype(np.float32)
  kernel = RNG.normal(size=(ksize, ksize, cin, cout)).astype(np.float32)
  y = np.asarray(up.transpose_conv(jnp.asarray(x), jnp.asarray(kernel), stride, padding))
  assert y.shape == (2, 2 * stride - 2 * padding + ksize, 3 * stride - 2 * padding + ksize, cout)
  # float64 definition; a float32 sum of n products errs by at most n * eps * sum |x k|
  exact = _scatter_transpose_conv(x.astype(np.float64), kernel.astype(np.float64), stride,
                                  padding)
  magnitude = _scatter_transpose_conv(np.abs(x).astype(np.float64),
                                      np.abs(kernel).astype(np.float64), stride, padding)
  terms = (-(-ksize // stride)) ** 2 * cin  # products summed into one output
  bound = terms * np.finfo(np.float32).eps * magnitude
  assert np.all(np.abs(y - exact) <= bound)
  ref = F.conv_transpose2d(_to_torch(x), torch.from_numpy(kernel).permute(2, 3, 0, 1),
                           stride=stride, padding=padding)
  assert np.all(np.abs(y - _from_torch(ref)) <= 2 * bound)


def test_transpose_conv_rectangular_stride_and_padding():
  x = RNG.normal(size=(1, 3, 5, 2)).astype(np.float32)
  kernel = RNG.normal(size=(4, 3, 2, 3)).astype(np.float32)
  y = up.transpose_conv(jnp.asarray(x), jnp.asarray(kernel), (2, 3), (1, 0))
  ref = F.conv_transpose2d(_to_torch(x), torch.from_numpy(kernel).permute(2, 3, 0, 1),
                           stride=(2, 3), padding=(1, 0))
  np.testing.assert_allclose(np.asarray(y), _from_torch(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,ksize,padding,size", [(2, 4, 1, 8), (2, 3, 1, 9),
                                                       (4, 8, 2, 16), (3, 3, 0, 9)])
def test_transpose_conv_is_adjoint_of_strided_conv(stride, ksize, padding, size):
  """<conv(u), v> == <u, transpose_conv(v)>, and it is conv's VJP."""
  u = jnp.asarray(RNG.normal(size=(2, size, size, 3)).astype(np.float32))
  kernel = jnp.asarray(RNG.normal(size=(ksize, ksize, 3, 4)).astype(np.float32))

  def conv(a):  # kernel (k, k, 3 -> 4) seen as a forward conv 3 -> 4
    return lax.conv_general_dilated(a, kernel, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  cu, vjp = jax.vjp(conv, u)
  v = jnp.asarray(RNG.normal(size=cu.shape).astype(np.float32))
  # The transpose maps 4 -> 3 channels: swap the kernel's in/out axes.
  tv = up.transpose_conv(v, kernel.transpose(0, 1, 3, 2), stride, padding)
  tv = jnp.pad(tv, ((0, 0), (0, size - tv.shape[1]), (0, size - tv.shape[2]), (0, 0)))
  np.testing.assert_allclose(float(jnp.vdot(cu, v)), float(jnp.vdot(u, tv)), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(vjp(v)[0]), np.asarray(tv), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride,ksize,padding", [(2, 4, 1), (1, 3, 1)])
def test_transpose_conv_gradients_match_torch(stride, ksize, padding):
  x = RNG.normal(size=(1, 3, 3, 2)).astype(np.float32)
  kernel = RNG.normal(size=(ksize, ksize, 2, 2)).astype(np.float32)
  gx, gk = jax.grad(lambda a, k: (up.transpose_conv(a, k, stride, padding) ** 2).sum(),
                    argnums=(0, 1))(jnp.asarray(x), jnp.asarray(kernel))
  tx = _to_torch(x).requires_grad_()
  tk = torch.from_numpy(kernel).permute(2, 3, 0, 1).contiguous().requires_grad_()
  (F.conv_transpose2d(tx, tk, stride=stride, padding=padding) ** 2).sum().backward()
  np.testing.assert_allclose(np.asarray(gx), _from_torch(tx.grad), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(gk), tk.grad.permute(2, 3, 0, 1).numpy(),
                             rtol=1e-4, atol=1e-4)


def test_transpose_conv_equals_input_dilation_formulation():
  """Same numbers as lax.conv_transpose at stride 32 / kernel 64 (FCN-32s)."""
  x = jnp.asarray(RNG.normal(size=(1, 3, 4, 2)).astype(np.float32))
  kernel = up.bilinear_kernel(64, 2)
  ours = up.transpose_conv(x, kernel, 32, 16)
  ref = lax.conv_transpose(x, kernel[::-1, ::-1], (32, 32), [(47, 47), (47, 47)],
                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_upsample_matches_torch_deconv_and_size(factor):
  x = RNG.normal(size=(2, 5, 3, 3)).astype(np.float32)
  y = np.asarray(up.bilinear_upsample(jnp.asarray(x), factor))
  assert y.shape == (2, 5 * factor, 3 * factor, 3)
  weight = torch.from_numpy(np.array(up.bilinear_kernel(2 * factor, 1))).permute(2, 3, 0, 1)
  ref = F.conv_transpose2d(_to_torch(x), weight.repeat(3, 1, 1, 1), stride=factor,
                           padding=factor // 2, groups=3)
  np.testing.assert_allclose(y, _from_torch(ref), rtol=1e-5, atol=1e-5)


def test_bilinear_upsample_reproduces_linear_ramp_inside():
  ramp = np.arange(6, dtype=np.float32)
  x = np.broadcast_to(ramp[None, :, None, None], (1, 6, 6, 1))
  y = np.asarray(up.bilinear_upsample(jnp.asarray(x), 4))[0, :, 10, 0]
  # Input value i sits at the centre of block i: position 4*i + 1.5.
  pos = np.arange(4 * 1.5, 4 * 4.5)
  np.testing.assert_allclose(y[6:18], (pos - 1.5) / 4, rtol=1e-6, atol=1e-6)


def test_crop_and_errors():
  x = jnp.arange(2 * 6 * 7 * 1).reshape(2, 6, 7, 1)
  np.testing.assert_array_equal(crop_ops.crop(x, (1, 2), (3, 4)), x[:, 1:4, 2:6])
  with pytest.raises(ValueError, match="does not fit"):
    crop_ops.crop(x, 5, (3, 3))
  with pytest.raises(ValueError, match="channels"):
    up.transpose_conv(x.astype(jnp.float32), jnp.zeros((2, 2, 3, 1)), 2)
  with pytest.raises(ValueError, match="uint8"):
    up.max_pool_with_switches(jnp.zeros((1, 32, 32, 1)), window=17)
