"""Upsampling operators as pure functions. All arrays are NHWC.

* `nearest_upsample`: copy each value into its whole factor x factor block.
* `bed_of_nails`: each value at the top-left of its block, zeros elsewhere.
* `max_pool`: k x k / stride k max pooling as a reshape and a max.
* `max_pool_with_switches` / `max_unpool`: the pooling switches (argmax offset
  inside each window, one byte per pooled element) put values back where the
  maximum came from; `shared_switches` gives one switch per window for
  all channels (the offset most channels chose), to unpool a map whose
  channels are not the pooled features' (FCN's class scores).
* `bilinear_kernel` / `bilinear_upsample`: the fixed FCN bilinear filter.
* `transpose_conv`: strided transpose convolution, PyTorch `ConvTranspose2d`
  semantics, computed by a phase (sub-pixel) decomposition.
* `pixel_shuffle` / `pixel_unshuffle`: depth to space and back, PyTorch's
  channel order.
* `carafe`: content-aware reassembly, each output a k x k kernel applied to
  the low-resolution window under it (CARAFE); `local_similarity`: the dot
  products of a high-resolution query with that window (SAPA). Both loop over
  the k*k taps, forward and backward, to keep memory near the output's size.
* `grid_sample`: bilinear sampling at normalised coordinates, border padding,
  PyTorch `grid_sample` semantics (DySample's point sampler).
* `indexed_unpool` / `index_pool`: IndexNet's index-guided upsampling and
  index-weighted pooling; with one-hot switches, `max_unpool` and max pooling.
"""
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def nearest_upsample(x, factor):
  """(N, H, W, C) -> (N, H*f, W*f, C), each value copied into its f x f block."""
  n, h, w, c = x.shape
  y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return y.reshape(n, h * factor, w * factor, c)


def bed_of_nails(x, factor):
  """(N, H, W, C) -> (N, H*f, W*f, C): value at the top-left of each block."""
  n, h, w, c = x.shape
  y = jnp.pad(x[:, :, None, :, None, :],
              ((0, 0), (0, 0), (0, factor - 1), (0, 0), (0, factor - 1), (0, 0)))
  return y.reshape(n, h * factor, w * factor, c)


def _pool_windows(x, k, ceil_mode):
  """(N, H, W, C) -> (N, H', k, W', k, C): -inf padded (ceil) or cropped (floor)."""
  n, h, w, c = x.shape
  if ceil_mode:
    x = jnp.pad(x, ((0, 0), (0, -h % k), (0, -w % k), (0, 0)), constant_values=-jnp.inf)
  hp, wp = x.shape[1] // k, x.shape[2] // k
  return x[:, :hp * k, :wp * k].reshape(n, hp, k, wp, k, c)


def _windows(x, window, ceil_mode=False):
  """(N, H, W, C) -> (N, H', W', C, k*k), row-major inside each window."""
  x = _pool_windows(x, window, ceil_mode)
  n, hp, k, wp, _, c = x.shape
  return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, hp, wp, c, k * k)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, window=2, ceil_mode=False):
  """k x k / stride k max pooling: (N, H, W, C) -> (N, H', W', C).

  Floor mode drops a trailing row/column that does not fill a window; ceil_mode
  pads the bottom/right with -inf instead (Caffe). Equal to `nn.max_pool` /
  `lax.reduce_window` in value and gradient (all of a window's gradient goes to
  its first maximum in row-major order, as select-and-scatter and PyTorch do);
  written as a reshape and a max (backward: an argmax and a one-hot mask), which
  XLA:CPU runs about 8x faster than select-and-scatter.
  """
  return _pool_windows(x, window, ceil_mode).max(axis=(2, 4))


def _max_pool_fwd(x, window, ceil_mode):
  return max_pool(x, window, ceil_mode), x


def _max_pool_bwd(window, ceil_mode, x, g):
  # The first maximum of each window by one argmax: one reduction picks it, so a
  # compiler that computes the window's values twice (fusing x's producer into
  # several consumers, each rounded its own way) cannot lose it, as an equality
  # test of the values against their max can.
  k = window
  first = jnp.argmax(_windows(x, k, ceil_mode), axis=-1)
  n, hp, wp, c = first.shape
  onehot = first[..., None] == jnp.arange(k * k)
  dx = jnp.where(onehot, g[..., None], 0).reshape(n, hp, wp, c, k, k)
  dx = dx.transpose(0, 1, 4, 2, 5, 3).reshape(n, hp * k, wp * k, c)
  h, w = x.shape[1:3]
  dx = dx[:, :h, :w]  # drop the ceil padding
  return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_with_switches(x, window=2):
  """k x k / stride k max pooling that also returns its switches.

  Floor mode: a trailing row/column that does not fill a window is dropped.
  Args:
    x: (N, H, W, C).
    window: k, with k*k <= 256 so a switch fits in one byte.
  Returns:
    pooled (N, H//k, W//k, C) and switches of the same shape, uint8, holding the
    row-major offset (dy*k + dx) of the first maximum inside each window.
  """
  if window * window > 256:
    raise ValueError(f"window={window}: switches must fit in uint8 (k*k <= 256)")
  if x.shape[1] < window or x.shape[2] < window:
    raise ValueError(f"input {x.shape[1]}x{x.shape[2]} smaller than window {window}")
  win = _windows(x, window)
  return win.max(axis=-1), jnp.argmax(win, axis=-1).astype(jnp.uint8)


def max_unpool(pooled, switches, window=2, output_size=None):
  """Inverse of `max_pool_with_switches`: each value back at its argmax.

  Vectorised inside the windows (a one-hot over k*k positions), no scatter.
  Args:
    pooled: (N, h, w, C); switches: (N, h, w, C) from `max_pool_with_switches`,
      or (N, h, w, 1) from `shared_switches` (one position for every channel).
    output_size: optional (H, W) >= (h*k, w*k), e.g. the pre-pool size; the
      extra bottom rows / right columns are zeros.
  Returns: (N, H, W, C), zeros everywhere but at the switch positions.
  """
  n, h, w, c = pooled.shape
  k = window
  onehot = (switches[..., None] == jnp.arange(k * k, dtype=jnp.uint8))
  y = jnp.where(onehot, pooled[..., None], jnp.zeros((), pooled.dtype))
  y = y.reshape(n, h, w, c, k, k).transpose(0, 1, 4, 2, 5, 3)
  y = y.reshape(n, h * k, w * k, c)
  if output_size is not None:
    oh, ow = output_size
    if oh < h * k or ow < w * k:
      raise ValueError(f"output_size {output_size} smaller than {(h * k, w * k)}")
    y = jnp.pad(y, ((0, 0), (0, oh - h * k), (0, ow - w * k), (0, 0)))
  return y


def shared_switches(switches, window=2):
  """One switch per window for every channel: the offset most channels chose.

  switches (N, h, w, C) uint8 from `max_pool_with_switches` -> (N, h, w, 1)
  uint8; a tie goes to the lowest offset. `max_unpool` with it puts all
  channels of a map at the same position of each window.
  """
  k2 = window * window
  votes = (switches[..., None] == jnp.arange(k2, dtype=jnp.uint8)).sum(axis=-2)
  return jnp.argmax(votes, axis=-1).astype(jnp.uint8)[..., None]


def bilinear_kernel(kernel_size, channels):
  """The FCN `upsample_filt` bilinear filter on the channel diagonal.

  Returns a (k, k, channels, channels) HWIO float32 array with
  K[:, :, c, c] = filt and zeros off the diagonal (channel c -> c only).
  """
  factor = (kernel_size + 1) // 2
  center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  og = np.arange(kernel_size)
  filt1d = 1 - np.abs(og - center) / factor
  filt = np.outer(filt1d, filt1d).astype(np.float32)
  kernel = np.zeros((kernel_size, kernel_size, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = filt[..., None]
  return jnp.asarray(kernel)


def transpose_conv(x, kernel, stride, padding=0):
  """Strided transpose convolution ("deconvolution").

  Scatter definition, per spatial axis: y[i*s + k - p] += x[i] * K[k], so
  overlapping contributions are summed; output length (n-1)*s - 2p + k.
  Identical to PyTorch `ConvTranspose2d` with weight `K.permute(2, 3, 0, 1)`.

  Stride 1 (DeconvNet's "deconvolution" layers) is the SAME-geometry
  convolution with the flipped kernel and padding k - 1 - p: one XLA conv.
  A stride s > 1 is computed as a phase (sub-pixel) decomposition: one dense
  matmul over the ceil(k/s)^2 shifted copies of the input produces all s*s
  output phases, then a depth-to-space, instead of convolving a zero-dilated
  input.
  Args:
    x: (N, H, W, Cin).
    kernel: (kh, kw, Cin, Cout).
    stride, padding: int or (h, w) pair.
  Returns: (N, (H-1)*sh - 2*ph + kh, (W-1)*sw - 2*pw + kw, Cout).
  """
  (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
  kh, kw, cin, cout = kernel.shape
  n, h, w, c = x.shape
  if c != cin:
    raise ValueError(f"input has {c} channels, kernel expects {cin}")
  out_h, out_w = (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f"padding {(ph, pw)} too large: output {out_h}x{out_w}")
  if (sh, sw) == (1, 1) and ph < kh and pw < kw:
    return lax.conv_general_dilated(
        x, kernel[::-1, ::-1].astype(x.dtype), (1, 1),
        [(kh - 1 - ph, kh - 1 - ph), (kw - 1 - pw, kw - 1 - pw)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  mh, mw = math.ceil(kh / sh), math.ceil(kw / sw)
  k = jnp.pad(kernel, ((0, mh * sh - kh), (0, mw * sw - kw), (0, 0), (0, 0)))
  # Phase r of output q*s + r sums x[q - m] * K[m*s + r]: a full correlation
  # with the m-flipped sub-kernel K[(M-1-t)*s + r], for all s*s phases at once.
  k = k.reshape(mh, sh, mw, sw, cin, cout)[::-1, :, ::-1]
  k = k.transpose(0, 2, 4, 1, 3, 5).reshape(mh * mw * cin, sh * sw * cout)
  qh, qw = h + mh - 1, w + mw - 1
  xp = jnp.pad(x, ((0, 0), (mh - 1, mh - 1), (mw - 1, mw - 1), (0, 0)))
  # M*M shifted views as one matrix: a single matmul, whose gradients are
  # matmuls too (much faster on CPU than XLA's backward convolutions).
  patches = jnp.concatenate(
      [xp[:, i:i + qh, j:j + qw] for i in range(mh) for j in range(mw)], axis=-1)
  y = patches @ k.astype(x.dtype)
  y = y.reshape(n, qh, qw, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
  y = y.reshape(n, qh * sh, qw * sw, cout)
  return y[:, ph:ph + out_h, pw:pw + out_w]


def bilinear_upsample(x, factor, padding=None):
  """Fixed bilinear upsampling: per-channel transpose conv, kernel 2f, stride f.

  padding=None uses f//2, so the output is exactly (N, H*f, W*f, C) for even f
  with each input value centred on its f x f block; padding=0 gives the Caffe
  FCN geometry ((H+1)*f, before the reference crop).
  """
  n, h, w, c = x.shape
  padding = factor // 2 if padding is None else padding
  kernel = bilinear_kernel(2 * factor, 1).astype(x.dtype)
  y = transpose_conv(x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1),
                     kernel, factor, padding)
  return y.reshape(n, c, y.shape[1], y.shape[2]).transpose(0, 2, 3, 1)


def pixel_shuffle(x, factor):
  """Depth to space: (N, h, w, C*f*f) -> (N, h*f, w*f, C).

  y[n, h*f + i, w*f + j, c] = x[n, h, w, c*f*f + i*f + j], PyTorch's
  `PixelShuffle` channel order.
  """
  n, h, w, cff = x.shape
  f = factor
  if cff % (f * f):
    raise ValueError(f"{cff} channels not divisible by factor**2 = {f * f}")
  c = cff // (f * f)
  y = x.reshape(n, h, w, c, f, f).transpose(0, 1, 4, 2, 5, 3)
  return y.reshape(n, h * f, w * f, c)


def pixel_unshuffle(y, factor):
  """Space to depth, the inverse of `pixel_shuffle`: (N, h*f, w*f, C) -> (N, h, w, C*f*f).

  x[n, h, w, c*f*f + i*f + j] = y[n, h*f + i, w*f + j, c], PyTorch's
  `PixelUnshuffle` channel order.
  """
  n, hf, wf, c = y.shape
  f = factor
  if hf % f or wf % f:
    raise ValueError(f"map {hf}x{wf} not divisible by factor {f}")
  x = y.reshape(n, hf // f, f, wf // f, f, c).transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, hf // f, wf // f, c * f * f)


# Content-aware reassembly (CARAFE) and local similarity (SAPA).
#
# Output position (i, j) looks at the low-resolution k x k window centred on
# (i // f, j // f). Three linear maps share that geometry; each is the others'
# transpose in one argument, so their VJPs are each other and every derivative
# keeps the per-tap loop (no (N, Ho, Wo, k*k, C) patches tensor, at any order):
#   _reassemble(x, K)[i, j, c]  = sum_t K[i, j, t] x[p_t(i, j), c]      (CARAFE)
#   _similarity(q, x)[i, j, t]  = sum_c q[i, j, c] x[p_t(i, j), c]      (SAPA)
#   _scatter(g, K)[p, c]        = sum_t sum_{(i, j): p_t(i, j) = p} g[i, j, c] K[i, j, t]
# with p_t(i, j) = (i // f + a - k // 2, j // f + b - k // 2), t = a*k + b, and
# x zero outside the map. The output grid is handled as (hq, f, wq, f) blocks,
# hq = ceil(Ho / f), so the low-resolution window of a tap broadcasts over a
# block instead of being upsampled.


def _compute_dtype(*arrays):
  """The result dtype, widened to at least float32 for the tap sums."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _to_blocks(y, f):
  """(N, Ho, Wo, D) -> (N, hq, f, wq, f, D), zero padded to whole blocks."""
  n, ho, wo, d = y.shape
  hq, wq = -(-ho // f), -(-wo // f)
  y = jnp.pad(y, ((0, 0), (0, hq * f - ho), (0, wq * f - wo), (0, 0)))
  return y.reshape(n, hq, f, wq, f, d)


def _from_blocks(y, ho, wo):
  n, hq, f, wq, _, d = y.shape
  return y.reshape(n, hq * f, wq * f, d)[:, :ho, :wo]


def _low_res_padding(k, size, blocks):
  """(before, after) zero padding of a low-resolution axis of `size` rows so
  that rows [a, a + blocks) of the padded axis are rows a - k//2 + [0, blocks)."""
  r = k // 2
  return r, k - 1 - r + max(0, blocks - size)


def _padded_low_res(x, k, hq, wq):
  h, w = x.shape[1:3]
  return jnp.pad(x, ((0, 0), _low_res_padding(k, h, hq), _low_res_padding(k, w, wq), (0, 0)))


def _tap_window(xp, t, k, hq, wq):
  """Tap t = a*k + b of the padded low-resolution map: its rows [a, a + hq) and
  columns [b, b + wq), shaped (N, hq, 1, wq, 1, C) to broadcast over blocks."""
  n, _, _, c = xp.shape
  win = lax.dynamic_slice(xp, (0, t // k, t % k, 0), (n, hq, wq, c))
  return win[:, :, None, :, None, :]


def _tap(arr, t):
  """Channel t of the last axis, kept as a length-1 axis."""
  return lax.dynamic_slice_in_dim(arr, t, 1, axis=arr.ndim - 1)


# The taps run in a `fori_loop`, so that one tap's temporaries are alive at a
# time (an unrolled loop lets XLA schedule all k*k shifted windows at once).


def _tap_loop(taps, body, zeros):
  """`body` over taps 0..taps-1 from `zeros`; the carry starts as tap 0's result,
  so it has the inputs' type inside shard_map (a constant zeros carry is not
  device-varying where the body's output is)."""
  return lax.fori_loop(1, taps, body, body(0, zeros))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _reassemble(x, kernels, k, f):
  dt = _compute_dtype(x, kernels)
  n, ho, wo, _ = kernels.shape
  kb = _to_blocks(kernels, f).astype(dt)
  hq, wq = kb.shape[1], kb.shape[3]
  xp = _padded_low_res(x, k, hq, wq).astype(dt)

  def body(t, y):
    return y + _tap(kb, t) * _tap_window(xp, t, k, hq, wq)

  y = _tap_loop(k * k, body, jnp.zeros(kb.shape[:-1] + (x.shape[-1],), dt))
  return _from_blocks(y, ho, wo).astype(jnp.result_type(x, kernels))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _similarity(q, x, k, f):
  dt = _compute_dtype(q, x)
  n, ho, wo, _ = q.shape
  qb = _to_blocks(q, f).astype(dt)
  hq, wq = qb.shape[1], qb.shape[3]
  xp = _padded_low_res(x, k, hq, wq).astype(dt)

  def body(t, s):
    st = jnp.sum(qb * _tap_window(xp, t, k, hq, wq), axis=-1, keepdims=True)
    return lax.dynamic_update_slice_in_dim(s, st, t, axis=s.ndim - 1)

  s = _tap_loop(k * k, body, jnp.zeros(qb.shape[:-1] + (k * k,), dt))
  return _from_blocks(s, ho, wo).astype(jnp.result_type(q, x))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _scatter(g, kernels, k, f, low_res):
  h, w = low_res
  dt = _compute_dtype(g, kernels)
  gb = _to_blocks(g, f).astype(dt)
  kb = _to_blocks(kernels, f).astype(dt)
  n, hq, _, wq, _, c = gb.shape
  hp, wp = h + sum(_low_res_padding(k, h, hq)), w + sum(_low_res_padding(k, w, wq))

  def body(t, acc):
    kt = _tap(kb, t)
    # The block sum of g * kernels[..., t], (N, hq, wq, C), one block position at a time.
    z = sum(gb[:, :, i, :, j] * kt[:, :, i, :, j] for i in range(f) for j in range(f))
    start = (0, t // k, t % k, 0)
    window = lax.dynamic_slice(acc, start, z.shape)
    return lax.dynamic_update_slice(acc, window + z, start)

  acc = _tap_loop(k * k, body, jnp.zeros((n, hp, wp, c), dt))
  r = k // 2
  return acc[:, r:r + h, r:r + w].astype(jnp.result_type(g, kernels))


def _reassemble_fwd(x, kernels, k, f):
  return _reassemble(x, kernels, k, f), (x, kernels)


def _reassemble_bwd(k, f, res, g):
  x, kernels = res
  dx = _scatter(g, kernels, k, f, x.shape[1:3])
  dk = _similarity(g, x, k, f)
  return dx.astype(x.dtype), dk.astype(kernels.dtype)


def _similarity_fwd(q, x, k, f):
  return _similarity(q, x, k, f), (q, x)


def _similarity_bwd(k, f, res, g):
  q, x = res
  dq = _reassemble(x, g, k, f)
  dx = _scatter(q, g, k, f, x.shape[1:3])
  return dq.astype(q.dtype), dx.astype(x.dtype)


def _scatter_fwd(g, kernels, k, f, low_res):
  return _scatter(g, kernels, k, f, low_res), (g, kernels)


def _scatter_bwd(k, f, low_res, res, u):
  g, kernels = res
  dg = _reassemble(u, kernels, k, f)
  dk = _similarity(g, u, k, f)
  return dg.astype(g.dtype), dk.astype(kernels.dtype)


_reassemble.defvjp(_reassemble_fwd, _reassemble_bwd)
_similarity.defvjp(_similarity_fwd, _similarity_bwd)
_scatter.defvjp(_scatter_fwd, _scatter_bwd)


def _check_window_args(name, low, high, kernel_size, factor):
  if low.ndim != 4 or high.ndim != 4:
    raise ValueError(f"{name}: expected NHWC arrays, got {low.shape} and {high.shape}")
  if low.shape[0] != high.shape[0]:
    raise ValueError(f"{name}: batch sizes differ: {low.shape[0]} vs {high.shape[0]}")
  if kernel_size < 1 or factor < 1:
    raise ValueError(f"{name}: kernel_size={kernel_size}, factor={factor} must be >= 1")


def carafe(x, kernels, kernel_size=5, factor=2):
  """Content-aware reassembly of features (CARAFE), kernels already normalised.

  y[n, i, j, c] = sum_{a, b < k} kernels[n, i, j, a*k + b]
                  * x[n, i//f + a - k//2, j//f + b - k//2, c],
  x zero outside the map.
  Args:
    x: (N, h, w, C) low-resolution features.
    kernels: (N, Ho, Wo, k*k), usually Ho = h*f, Wo = w*f (any size is taken).
  Returns: (N, Ho, Wo, C), dtype of x and kernels promoted.

  Computed as a loop over the k*k taps, each a product of a kernel channel and
  a shifted low-resolution window broadcast over its f x f block, never the
  (N, Ho, Wo, k*k, C) patches tensor; the VJP loops over the taps too
  (d kernels[..., t] = sum_c g * x_t, dx = sum_t shift_t^T(block sum of
  g * kernels[..., t])). Sums are accumulated in at least float32. XLA's
  compiled memory (temp + output, N=1, 512x512x64 output, k=5, f=2, float32;
  experiments/operator_memory.py): 1.3x the output forward, 2.2x for the
  output and both gradients (0.5x of it temporaries), against 32x and 46x
  through a patches tensor.
  """
  _check_window_args("carafe", x, kernels, kernel_size, factor)
  if kernels.shape[-1] != kernel_size * kernel_size:
    raise ValueError(f"carafe: kernels have {kernels.shape[-1]} channels, "
                     f"expected kernel_size**2 = {kernel_size ** 2}")
  return _reassemble(x, kernels, kernel_size, factor)


def local_similarity(q, k, kernel_size=5, factor=2):
  """Similarity of each high-resolution query to its low-resolution window (SAPA).

  s[n, i, j, a*K + b] = sum_e q[n, i, j, e] * k[n, i//f + a - K//2, j//f + b - K//2, e],
  k zero outside the map.
  Args:
    q: (N, Ho, Wo, E) queries at the output resolution.
    k: (N, h, w, E) keys at the low resolution.
  Returns: (N, Ho, Wo, K*K) (no softmax), dtype of q and k promoted.

  A loop over the K*K taps, forward and backward (dq is `carafe(k, g)`, dk the
  transposed reassembly of q by g), with no (N, Ho, Wo, K*K, E) tensor. XLA's
  compiled memory in multiples of the output (N=1, 512x512, E=64, K=5, f=2,
  float32; experiments/operator_memory.py): 2.3x forward, 5.6x for the output
  and both gradients (dq alone is E/K^2 = 2.6x; 1.4x temporaries), against
  84x and 117x through a patches tensor.
  """
  _check_window_args("local_similarity", k, q, kernel_size, factor)
  if q.shape[-1] != k.shape[-1]:
    raise ValueError(f"local_similarity: embedding sizes differ: {q.shape[-1]} vs {k.shape[-1]}")
  return _similarity(q, k, kernel_size, factor)


def grid_sample(x, grid):
  """Bilinear sampling at normalised coordinates, border padding.

  Equal to torch.nn.functional.grid_sample(mode='bilinear',
  padding_mode='border', align_corners=False) in NHWC.
  Args:
    x: (N, H, W, C).
    grid: (N, Ho, Wo, 2), (x, y) in [-1, 1]; -1 / +1 are the outer edges of
      the first / last pixel. Pixel coordinate ((g + 1) * size - 1) / 2,
      clipped to [0, size - 1] (zero gradient where clipped, as in PyTorch).
  Returns: (N, Ho, Wo, C), bilinear in the four neighbours; differentiable
  w.r.t. x and grid.
  """
  n, h, w, c = x.shape
  if grid.ndim != 4 or grid.shape[0] != n or grid.shape[-1] != 2:
    raise ValueError(f"grid_sample: grid {grid.shape} for input {x.shape}")
  _, ho, wo, _ = grid.shape

  def pixel(g, size):
    p = ((g + 1) * size - 1) / 2
    inside = (p > 0) & (p < size - 1)
    return jnp.where(inside, p, lax.stop_gradient(jnp.clip(p, 0, size - 1)))

  ix, iy = pixel(grid[..., 0], w), pixel(grid[..., 1], h)
  x0, y0 = lax.stop_gradient(jnp.floor(ix)), lax.stop_gradient(jnp.floor(iy))
  wx1, wy1 = ix - x0, iy - y0
  wx0, wy0 = 1 - wx1, 1 - wy1
  x0i, y0i = x0.astype(jnp.int32), y0.astype(jnp.int32)
  # The +1 neighbour leaves the map only at the last row/column, where its
  # weight is 0: clamping it reads a value that is multiplied by 0.
  x1i, y1i = jnp.minimum(x0i + 1, w - 1), jnp.minimum(y0i + 1, h - 1)
  # One gather of the four neighbours (and one scatter-add in its gradient).
  idx = jnp.stack([y0i * w + x0i, y0i * w + x1i, y1i * w + x0i, y1i * w + x1i], axis=-1)
  weights = jnp.stack([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], axis=-1)
  vals = jnp.take_along_axis(x.reshape(n, h * w, c), idx.reshape(n, ho * wo * 4, 1), axis=1)
  y = jnp.sum(vals.reshape(n, ho, wo, 4, c) * weights[..., None], axis=3)
  return y.astype(jnp.result_type(x, grid))


def indexed_unpool(x, index, factor):
  """Index-guided upsampling (IndexNet's decoder): nearest_upsample(x, f) * index.

  x (N, h, w, C); index (N, h*f, w*f, C or 1) -> (N, h*f, w*f, C). With the
  one-hot index of `max_pool_with_switches`'s switches this is `max_unpool`.
  """
  n, h, w, _ = x.shape
  if index.shape[1:3] != (h * factor, w * factor):
    raise ValueError(f"indexed_unpool: index {index.shape} for {x.shape} and factor {factor}")
  return nearest_upsample(x, factor) * index


def index_pool(x, index, window=2):
  """Index-weighted pooling (IndexNet's encoder, `k*k * avg_pool(x * index)`).

  x (N, H, W, C); index (N, H, W, C or 1) -> (N, H//k, W//k, C), the sum of
  x * index over each k x k / stride k window (floor mode: a trailing
  row/column that does not fill a window is dropped). With the one-hot index
  of `max_pool_with_switches`'s switches this is its pooled output.
  """
  if index.shape[1:3] != x.shape[1:3]:
    raise ValueError(f"index_pool: index {index.shape} for input {x.shape}")
  return _pool_windows(x * index, window, ceil_mode=False).sum(axis=(2, 4))
