"""pixel_shuffle, carafe, local_similarity, grid_sample, indexed_unpool and
index_pool against PyTorch implementations of their definitions (values and
vector-Jacobian products for a random cotangent) and numpy loops."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnjax.ops import upsample as up

RNG = np.random.default_rng(0)


def _nchw(a, dtype=torch.float64, grad=False):
  t = torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float64).transpose(0, 3, 1, 2)))
  return t.to(dtype).requires_grad_(grad)


def _nhwc(t):
  return t.detach().to(torch.float64).numpy().transpose(0, 2, 3, 1)


def _tol(dtype, n_terms, magnitude):
  """Rounding of a sum of n_terms products: relative eps per operation, errors
  growing like sqrt(n_terms) (random walk), times the sum of the terms'
  absolute values (`magnitude`), with a factor 4 of margin."""
  return 4 * np.finfo(dtype).eps * np.sqrt(n_terms) * magnitude


def _assert_close(actual, expected, dtype, n_terms, magnitude):
  actual = np.asarray(actual, np.float64)
  assert actual.shape == expected.shape
  err = np.abs(actual - expected).max()
  tol = _tol(dtype, n_terms, np.max(magnitude))
  assert err <= tol, f"max error {err:.3g} > tolerance {tol:.3g}"


def _jax_vjp(fn, dtype, *args):
  """fn(*args) and its VJP for the last arg (the cotangent), jitted, as float64 numpy."""
  def run(*a):
    y, vjp = jax.vjp(fn, *a[:-1])
    return (y,) + vjp(a[-1])
  out = jax.jit(run)(*[jnp.asarray(a, dtype) for a in args])
  for o in out:
    assert o.dtype == dtype
  return [np.asarray(o, np.float64) for o in out]


def _torch_vjp(fn, *args, dtype=torch.float64):
  """fn on NCHW tensors and the gradients of sum(fn * cotangent), as NHWC float64."""
  ins = [_nchw(a, dtype, grad=True) for a in args[:-1]]
  y = fn(*ins)
  grads = torch.autograd.grad(y, ins, _nchw(args[-1], dtype))
  return [_nhwc(t) for t in (y,) + grads]


# ----------------------------------------------------------------- pixel shuffle


@pytest.mark.parametrize("shape,factor",
                         [((2, 5, 7, 12), 2), ((1, 3, 4, 18), 3), ((1, 2, 2, 4), 1)])
def test_pixel_shuffle_matches_torch_and_loop(shape, factor):
  x = RNG.normal(size=shape).astype(np.float32)
  g = RNG.normal(size=(shape[0], shape[1] * factor, shape[2] * factor,
                       shape[3] // factor ** 2)).astype(np.float32)
  y, dx = _jax_vjp(lambda a: up.pixel_shuffle(a, factor), jnp.float32, x, g)
  ref_y, ref_dx = _torch_vjp(lambda a: F.pixel_shuffle(a, factor), x, g)
  # A permutation: exact values and gradients.
  assert np.array_equal(y, ref_y) and np.array_equal(dx, ref_dx)
  n, h, w, cff = shape
  f = factor
  loop = np.zeros(ref_y.shape, np.float32)
  for b, i, j, c, di, dj in itertools.product(range(n), range(h), range(w), range(cff // f // f),
                                              range(f), range(f)):
    loop[b, i * f + di, j * f + dj, c] = x[b, i, j, c * f * f + di * f + dj]
  assert np.array_equal(y, loop)


@pytest.mark.parametrize("shape,factor", [((2, 10, 14, 3), 2), ((1, 9, 6, 2), 3)])
def test_pixel_unshuffle_matches_torch_and_inverts_shuffle(shape, factor):
  y = RNG.normal(size=shape).astype(np.float32)
  g = RNG.normal(size=(shape[0], shape[1] // factor, shape[2] // factor,
                       shape[3] * factor ** 2)).astype(np.float32)
  x, dy = _jax_vjp(lambda a: up.pixel_unshuffle(a, factor), jnp.float32, y, g)
  ref_x, ref_dy = _torch_vjp(lambda a: F.pixel_unshuffle(a, factor), y, g)
  assert np.array_equal(x, ref_x) and np.array_equal(dy, ref_dy)
  assert np.array_equal(np.asarray(up.pixel_shuffle(jnp.asarray(x, jnp.float32), factor)), y)


# --------------------------------------------------- carafe and local similarity


def torch_windows(x, k, f, out_size):
  """(N, C, h, w) -> (N, C, k*k, Ho, Wo): x[i//f + a - k//2, j//f + b - k//2]
  at tap a*k + b, zero outside the map (F.unfold on the zero-padded low-res
  map, then nearest indexing)."""
  n, c, h, w = x.shape
  ho, wo = out_size
  r = k // 2
  rows, cols = torch.arange(ho) // f, torch.arange(wo) // f
  # Zeros for windows beyond the map (output rows past h*f).
  extra_h, extra_w = max(0, int(rows.max()) + 1 - h), max(0, int(cols.max()) + 1 - w)
  xp = F.pad(x, (r, k - 1 - r + extra_w, r, k - 1 - r + extra_h))
  u = F.unfold(xp, k).reshape(n, c, k * k, h + extra_h, w + extra_w)
  return u[:, :, :, rows][:, :, :, :, cols]


def torch_carafe(x, kernels, k, f):
  win = torch_windows(x, k, f, kernels.shape[2:])
  return torch.einsum("nctij,ntij->ncij", win, kernels)


def torch_similarity(q, keys, k, f):
  win = torch_windows(keys, k, f, q.shape[2:])
  return torch.einsum("nctij,ncij->ntij", win, q)


def loop_windows_product(low, high, k, f, contract):
  """Numpy loop of the definitions: contract='carafe' sums over taps,
  'similarity' over channels."""
  n, h, w, c = low.shape
  _, ho, wo, _ = high.shape
  r = k // 2
  out = np.zeros((n, ho, wo, c if contract == "carafe" else k * k))
  for b, i, j, a, bb in itertools.product(range(n), range(ho), range(wo), range(k), range(k)):
    p, q = i // f + a - r, j // f + bb - r
    if 0 <= p < h and 0 <= q < w:
      if contract == "carafe":
        out[b, i, j] += high[b, i, j, a * k + bb] * low[b, p, q]
      else:
        out[b, i, j, a * k + bb] = np.dot(high[b, i, j], low[b, p, q])
  return out


# (h, w, C, factor, kernel_size, (Ho, Wo), precision): odd and non-square
# maps, outputs h*f x w*f, smaller, and larger (windows partly beyond the map).
WINDOW_CASES = [
    (5, 7, 3, 2, 3, (10, 14), "float32"),
    (5, 7, 3, 2, 5, (10, 14), "float64"),
    (5, 7, 3, 3, 5, (13, 23), "float32"),
    (5, 7, 3, 3, 3, (15, 20), "float64"),
    (4, 3, 2, 2, 5, (7, 9), "float32"),
    (3, 5, 4, 2, 4, (6, 10), "float64"),    # even kernel: taps -2..1
    (6, 4, 2, 1, 3, (6, 4), "float32"),     # factor 1: a plain local filter
]


@pytest.mark.parametrize("h,w,c,f,k,out_size,precision", WINDOW_CASES)
def test_carafe_matches_torch(h, w, c, f, k, out_size, precision):
  n = 2
  x = RNG.normal(size=(n, h, w, c))
  kernels = RNG.normal(size=(n, *out_size, k * k))
  g = RNG.normal(size=(n, *out_size, c))
  if precision == "float32":
    x, kernels, g = (a.astype(np.float32) for a in (x, kernels, g))
  fn = lambda a, b: up.carafe(a, b, k, f)
  with jax.enable_x64(precision == "float64"):
    got = _jax_vjp(fn, jnp.dtype(precision), x, kernels, g)
  # Exact-enough reference: float64 from the same (float32-rounded) inputs;
  # the same on absolute values gives each sum's magnitude (it is bilinear).
  ref = _torch_vjp(lambda a, b: torch_carafe(a, b, k, f), x, kernels, g)
  mag = _torch_vjp(lambda a, b: torch_carafe(a, b, k, f), abs(x), abs(kernels), abs(g))
  # Terms per sum: k*k taps (y), k*k taps of f*f block positions (dx), C (dkernels).
  for got_i, ref_i, mag_i, terms in zip(got, ref, mag, (k * k, k * k * f * f, c)):
    _assert_close(got_i, ref_i, precision, terms, mag_i)


@pytest.mark.parametrize("h,w,c,f,k,out_size,precision", WINDOW_CASES)
def test_local_similarity_matches_torch(h, w, c, f, k, out_size, precision):
  n = 2
  q = RNG.normal(size=(n, *out_size, c))
  keys = RNG.normal(size=(n, h, w, c))
  g = RNG.normal(size=(n, *out_size, k * k))
  if precision == "float32":
    q, keys, g = (a.astype(np.float32) for a in (q, keys, g))
  fn = lambda a, b: up.local_similarity(a, b, k, f)
  with jax.enable_x64(precision == "float64"):
    got = _jax_vjp(fn, jnp.dtype(precision), q, keys, g)
  ref = _torch_vjp(lambda a, b: torch_similarity(a, b, k, f), q, keys, g)
  mag = _torch_vjp(lambda a, b: torch_similarity(a, b, k, f), abs(q), abs(keys), abs(g))
  # Terms per sum: E channels (s), k*k taps (dq), k*k taps of f*f positions (dk).
  for got_i, ref_i, mag_i, terms in zip(got, ref, mag, (c, k * k, k * k * f * f)):
    _assert_close(got_i, ref_i, precision, terms, mag_i)


@pytest.mark.parametrize("h,w,c,f,k,out_size", [(3, 4, 2, 2, 3, (6, 8)), (3, 2, 3, 3, 5, (8, 7))])
def test_carafe_and_similarity_numpy_loop(h, w, c, f, k, out_size):
  with jax.enable_x64(True):
    x = RNG.normal(size=(1, h, w, c))
    kernels = RNG.normal(size=(1, *out_size, k * k))
    q = RNG.normal(size=(1, *out_size, c))
    y = np.asarray(up.carafe(jnp.asarray(x), jnp.asarray(kernels), k, f))
    s = np.asarray(up.local_similarity(jnp.asarray(q), jnp.asarray(x), k, f))
  np.testing.assert_allclose(y, loop_windows_product(x, kernels, k, f, "carafe"),
                             rtol=0, atol=1e-12)
  np.testing.assert_allclose(s, loop_windows_product(x, q, k, f, "similarity"),
                             rtol=0, atol=1e-12)


def test_carafe_with_softmax_kernels_is_a_convex_combination():
  """Normalised kernels: a constant map stays constant away from the border."""
  x = jnp.full((1, 6, 6, 2), 3.0)
  kernels = jax.nn.softmax(jnp.asarray(RNG.normal(size=(1, 12, 12, 9)), jnp.float32), axis=-1)
  y = np.asarray(up.carafe(x, kernels, 3, 2))
  np.testing.assert_allclose(y[:, 2:-2, 2:-2], 3.0, rtol=1e-6)


@pytest.mark.parametrize("op", ["carafe", "local_similarity"])
def test_vmap_bfloat16_and_second_order(op):
  k, f = 3, 2
  low = RNG.normal(size=(3, 2, 4, 5, 3)).astype(np.float32)      # (B, N, h, w, C)
  high_c = 3 if op == "local_similarity" else k * k
  high = RNG.normal(size=(3, 2, 8, 10, high_c)).astype(np.float32)
  if op == "carafe":
    fn = lambda lo, hi: up.carafe(lo, hi, k, f)
    ref_fn = lambda lo, hi: torch_carafe(lo, hi, k, f)
  else:
    fn = lambda lo, hi: up.local_similarity(hi, lo, k, f)
    ref_fn = lambda lo, hi: torch_similarity(hi, lo, k, f)
  low6, high6 = low.reshape(6, 4, 5, 3), high.reshape(6, 8, 10, high_c)
  ref = _nhwc(ref_fn(_nchw(low6), _nchw(high6)))
  mag = _nhwc(ref_fn(_nchw(abs(low6)), _nchw(abs(high6))))
  ref = ref.reshape(3, 2, *ref.shape[1:])
  # vmap over a leading axis (under jit).
  got = jax.jit(jax.vmap(fn))(jnp.asarray(low), jnp.asarray(high))
  _assert_close(got, ref, np.float32, k * k * 3, mag)
  # bfloat16 in, bfloat16 out (sums in float32): the inputs' own rounding
  # (2 x 2^-8 relative per product) and the output's; the reference uses the
  # bfloat16-rounded inputs, so only the output rounding and float32 remain.
  lo16, hi16 = jnp.asarray(low[0], jnp.bfloat16), jnp.asarray(high[0], jnp.bfloat16)
  y16 = jax.jit(fn)(lo16, hi16)
  assert y16.dtype == jnp.bfloat16
  ref16 = _nhwc(ref_fn(_nchw(np.asarray(lo16, np.float32)), _nchw(np.asarray(hi16, np.float32))))
  err = np.abs(np.asarray(y16, np.float64) - ref16)
  assert np.all(err <= 2.0 ** -8 * np.abs(ref16) + 1e-6 * mag[:2])
  grads16 = jax.jit(jax.grad(lambda a, b: fn(a, b).astype(jnp.float32).sum(), argnums=(0, 1)))(
      lo16, hi16)
  assert all(gr.dtype == jnp.bfloat16 for gr in grads16)
  # Second order: d/dhigh of <v, d/dlow <g, fn(low, high)>>, against torch double backward.
  lo, hi = low[0].astype(np.float64), high[0].astype(np.float64)
  g = RNG.normal(size=ref.shape[1:])
  v = RNG.normal(size=lo.shape)
  with jax.enable_x64(True):
    def inner(h_):
      return jax.vjp(lambda l_: fn(l_, h_), jnp.asarray(lo))[1](jnp.asarray(g))[0]
    got2 = jax.jit(jax.grad(lambda h_: jnp.sum(inner(h_) * jnp.asarray(v))))(jnp.asarray(hi))
  tl, th = _nchw(lo, grad=True), _nchw(hi, grad=True)
  (dl,) = torch.autograd.grad(ref_fn(tl, th), tl, _nchw(g), create_graph=True)
  (ref2,) = torch.autograd.grad(dl, th, _nchw(v))
  np.testing.assert_allclose(np.asarray(got2), _nhwc(ref2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", ["carafe", "local_similarity"])
def test_memory_stays_near_the_output_size(op):
  """XLA's compiled memory, in multiples of the operator's output bytes (N=1,
  128x128 output, C=32, k=5, f=2): forward temp + output <= 3x; output and
  both input gradients for a cotangent: temp <= 2x beyond those results. A
  (N, Ho, Wo, k*k, C) patches tensor alone would be 25x carafe's output."""
  s, c, k, f = 128, 32, 5, 2
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  if op == "carafe":
    fn = lambda a, b: up.carafe(a, b, k, f)
    args = (spec(1, s // f, s // f, c), spec(1, s, s, k * k))
    cot = spec(1, s, s, c)
  else:
    fn = lambda a, b: up.local_similarity(a, b, k, f)
    args = (spec(1, s, s, c), spec(1, s // f, s // f, c))
    cot = spec(1, s, s, k * k)
  out_bytes = cot.size * 4

  def fwd_vjp(a, b, g):
    y, vjp = jax.vjp(fn, a, b)
    return (y,) + vjp(g)

  fwd = jax.jit(fn).lower(*args).compile().memory_analysis()
  assert fwd.temp_size_in_bytes + fwd.output_size_in_bytes <= 3 * out_bytes
  both = jax.jit(fwd_vjp).lower(*args, cot).compile().memory_analysis()
  # Twice the output, plus a little for the loop's bookkeeping (the first tap is
  # computed before the loop: 4 KiB here); a patches tensor would be 25x.
  assert both.temp_size_in_bytes <= 2.01 * out_bytes


# ------------------------------------------------------------------ grid_sample


def loop_grid_sample(x, grid):
  """Numpy loop: border-clipped pixel coordinates, bilinear in four neighbours."""
  n, h, w, c = x.shape
  _, ho, wo, _ = grid.shape
  out = np.zeros((n, ho, wo, c))
  for b, i, j in itertools.product(range(n), range(ho), range(wo)):
    px = min(max(((grid[b, i, j, 0] + 1) * w - 1) / 2, 0), w - 1)
    py = min(max(((grid[b, i, j, 1] + 1) * h - 1) / 2, 0), h - 1)
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    for yy, xx in itertools.product((y0, y0 + 1), (x0, x0 + 1)):
      if yy < h and xx < w:
        out[b, i, j] += (1 - abs(px - xx)) * (1 - abs(py - yy)) * x[b, yy, xx]
  return out


def torch_grid_sample(x, grid_nchw):
  return F.grid_sample(x, grid_nchw.permute(0, 2, 3, 1), mode="bilinear",
                       padding_mode="border", align_corners=False)


@pytest.mark.parametrize("shape,out_size,precision", [
    ((2, 5, 7, 3), (6, 9), "float32"), ((2, 5, 7, 3), (6, 9), "float64"),
    ((1, 4, 8, 2), (9, 3), "float32"), ((1, 1, 6, 2), (3, 4), "float64")])
def test_grid_sample_matches_torch(shape, out_size, precision):
  n, h, w, c = shape
  x = RNG.normal(size=shape)
  # Beyond [-1, 1] too, to exercise the border clipping.
  grid = RNG.uniform(-1.25, 1.25, size=(n, *out_size, 2))
  grid[0, 0, 0] = [-1.0, 1.0]  # the outer corner: clipped to the last row
  # On the clipping bounds (exactly for power-of-two sizes): no gradient there.
  grid[0, 0, 1] = [1 / w - 1, 1 - 1 / h]
  grid[0, 1, 0] = [1 - 1 / w, 1 / h - 1]
  g = RNG.normal(size=(n, *out_size, c))
  if precision == "float32":
    x, grid, g = (a.astype(np.float32) for a in (x, grid, g))
  with jax.enable_x64(precision == "float64"):
    got = _jax_vjp(up.grid_sample, jnp.dtype(precision), x, grid, g)
  # Same dtype as torch so both round the pixel coordinates alike (the
  # gradient w.r.t. the grid jumps where the coordinate crosses an integer).
  ref = _torch_vjp(torch_grid_sample, x, grid, g, dtype=getattr(torch, precision))
  eps = np.finfo(precision).eps
  # y: 4 terms of |x|; dx: up to Ho*Wo*4 terms of |g|; dgrid: 4*C terms of
  # |g| |x| size/2. Both sides round: 2x the one-sided bound.
  sx, sg = np.abs(x).max(), np.abs(g).max()
  bounds = [4 * sx, out_size[0] * out_size[1] * 4 * sg, 4 * c * sg * sx * max(h, w) / 2]
  terms = [4, out_size[0] * out_size[1] * 4, 4 * c]
  for got_i, ref_i, b, t in zip(got, ref, bounds, terms):
    err = np.abs(got_i - ref_i).max()
    assert err <= 2 * 4 * eps * np.sqrt(t) * b, (err, b)
  np.testing.assert_allclose(got[0], loop_grid_sample(x.astype(np.float64),
                                                     grid.astype(np.float64)),
                             rtol=0, atol=8 * eps * 4 * sx)


def test_grid_sample_identity_grid_reproduces_input():
  """Pixel centres ((2*idx + 1) / size - 1) sample the pixels themselves."""
  x = RNG.normal(size=(1, 5, 7, 2)).astype(np.float32)
  gy, gx = np.meshgrid((2 * np.arange(5) + 1) / 5 - 1, (2 * np.arange(7) + 1) / 7 - 1,
                       indexing="ij")
  grid = np.stack([gx, gy], -1)[None].astype(np.float32)
  y = jax.jit(up.grid_sample)(jnp.asarray(x), jnp.asarray(grid))
  np.testing.assert_allclose(np.asarray(y), x,
                             rtol=0, atol=1e-6)


# ------------------------------------------------------ indexed unpool / pool


def onehot_from_switches(switches, window, size):
  """(N, h, w, C) offsets -> (N, H, W, C) with a 1 at each window's offset."""
  n, hp, wp, c = switches.shape
  index = np.zeros((n, *size, c), np.float32)
  b, i, j, ch = np.indices(switches.shape)
  index[b, i * window + switches // window, j * window + switches % window, ch] = 1
  return index


@pytest.mark.parametrize("shape,window",
                         [((2, 10, 14, 3), 2), ((1, 9, 7, 4), 3), ((1, 5, 7, 2), 2)])
def test_indexed_unpool_and_index_pool_with_switches_are_max_unpool_and_max_pool(shape, window):
  x = RNG.normal(size=shape).astype(np.float32)
  pooled, switches = jax.jit(up.max_pool_with_switches, static_argnums=1)(jnp.asarray(x), window)
  hp, wp = pooled.shape[1:3]
  index = onehot_from_switches(np.asarray(switches).astype(np.int64), window,
                               (hp * window, wp * window))
  unpooled = jax.jit(up.indexed_unpool, static_argnums=2)(pooled, jnp.asarray(index), window)
  max_unpooled = jax.jit(up.max_unpool, static_argnums=2)(pooled, switches, window)
  assert np.array_equal(np.asarray(unpooled), np.asarray(max_unpooled))
  crop = x[:, :hp * window, :wp * window]
  full_index = np.zeros(shape, np.float32)
  full_index[:, :hp * window, :wp * window] = index
  index_pooled = jax.jit(up.index_pool, static_argnums=2)(
      jnp.asarray(x), jnp.asarray(full_index), window)
  assert np.array_equal(np.asarray(index_pooled), np.asarray(pooled))
  # And the torch pair: max_pool2d's indices, max_unpool2d.
  tp, ti = F.max_pool2d(_nchw(crop, torch.float32), window, return_indices=True)
  assert np.array_equal(np.asarray(unpooled), _nhwc(F.max_unpool2d(tp, ti, window)))


@pytest.mark.parametrize("index_channels", [3, 1])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_indexed_unpool_matches_torch(index_channels, precision):
  n, h, w, c, f = 2, 5, 7, 3, 2
  x = RNG.normal(size=(n, h, w, c))
  index = RNG.uniform(size=(n, h * f, w * f, index_channels))
  g = RNG.normal(size=(n, h * f, w * f, c))
  if precision == "float32":
    x, index, g = (a.astype(np.float32) for a in (x, index, g))
  with jax.enable_x64(precision == "float64"):
    got = _jax_vjp(lambda a, b: up.indexed_unpool(a, b, f), jnp.dtype(precision), x, index, g)
  ref = _torch_vjp(lambda a, b: F.interpolate(a, scale_factor=f, mode="nearest") * b, x, index, g)
  eps = np.finfo(precision).eps
  # y: one product; dx: f*f products; dindex: C products.
  for got_i, ref_i, terms in zip(got, ref, (1, f * f, c)):
    np.testing.assert_allclose(got_i, ref_i, rtol=0,
                               atol=_tol(precision, terms, np.abs(ref_i).max() + 1) * 2)
  loop = np.zeros_like(ref[0])
  for i, j in itertools.product(range(h * f), range(w * f)):
    loop[:, i, j] = x[:, i // f, j // f] * index[:, i, j]
  assert np.array_equal(got[0], loop.astype(precision))


@pytest.mark.parametrize("shape,index_channels,window",
                         [((2, 10, 14, 3), 3, 2), ((2, 9, 7, 3), 1, 2), ((1, 9, 8, 2), 2, 3)])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_index_pool_matches_torch(shape, index_channels, window, precision):
  n, h, w, c = shape
  k = window
  x = RNG.normal(size=shape)
  index = RNG.uniform(size=(n, h, w, index_channels))
  g = RNG.normal(size=(n, h // k, w // k, c))
  if precision == "float32":
    x, index, g = (a.astype(np.float32) for a in (x, index, g))
  with jax.enable_x64(precision == "float64"):
    got = _jax_vjp(lambda a, b: up.index_pool(a, b, k), jnp.dtype(precision), x, index, g)
  # IndexNet's form: k*k * avg_pool(x * index) (floor mode).
  ref = _torch_vjp(lambda a, b: k * k * F.avg_pool2d(a * b, k), x, index, g)
  mag = _torch_vjp(lambda a, b: k * k * F.avg_pool2d(a * b, k), abs(x), abs(index), abs(g))
  # y: k*k terms; dx: 1 product; dindex: C products.
  for got_i, ref_i, mag_i, terms in zip(got, ref, mag, (k * k, 1, c)):
    _assert_close(got_i, ref_i, precision, terms, mag_i)
  loop = np.zeros(ref[0].shape)
  for i, j, a, b in itertools.product(range(h // k), range(w // k), range(k), range(k)):
    loop[:, i, j] += x[:, i * k + a, j * k + b] * index[:, i * k + a, j * k + b]
  _assert_close(got[0], loop, precision, k * k, mag[0])
