"""Tiled inference: segment an image of any size window by window, with the
labels that one full-image pass would give.

Why it is exact: every model here pools at most five times, so it is
equivariant to shifts by a multiple of S = 32. A window whose top-left
corner is a multiple of S sees the same pooling grid as the full image, and
its labels equal the full image's at every pixel at least the receptive-field
margin away from a window edge that is not an image edge (zero padding and
truncated pooling windows at a cut only reach that far). So windows overlap
by 2 * halo (halo >= margin), and each pixel's label is taken from the window
whose kept core holds it: the sliding window done right, each window a whole
convolutional pass rather than one patch per pixel.

Images are (H, W, 3) uint8 NHWC; labels (H, W) uint8 class ids.
"""
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from fcnjax.train import step as step_lib

# A multiple of every model's total stride: at most five 2x2 poolings (VGG stages,
# config.model.depth <= 5), so 32-aligned windows see the full image's pooling grid.
STRIDE = 32
# XLA working memory a default tile (window incl. halo) may take where the
# process's resident memory cannot be read (not Linux).
DEFAULT_TILE_BYTES = 512 * 2 ** 20
# The peak resident memory the automatic tile budgets a whole predicting
# process for: the runtime and compiled programs, the image-sized buffers
# (`image_bytes`) and one window's XLA memory, test-time passes included.
PROCESS_BYTES = 2 * 10 ** 9
# Kept free of windows under that budget: compiling each window shape's
# programs and the host copies of a window's labels (measured on an 8000 x
# 8000 predict with three scales and flips: 86 MiB above the budget without it).
RESERVE_BYTES = 192 * 2 ** 20


def resident_bytes():
  """This process's resident memory now (Linux: /proc/self/statm), else None."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return None


def image_bytes(pixels, channels=3):
  """Bytes a predicting process holds per image besides the windows: the
  decoded image twice (the file's and the array), its labels, the overlay."""
  return pixels * (2 * channels + 1 + 3)


def window_budget(pixels=0, channels=3, process_bytes=PROCESS_BYTES):
  """Bytes one window may take so the process stays under `process_bytes`
  with an image of `pixels`: what resident memory now, `image_bytes` and
  RESERVE_BYTES leave (DEFAULT_TILE_BYTES where resident memory cannot be read)."""
  resident = resident_bytes()
  if resident is None:
    return DEFAULT_TILE_BYTES
  return process_bytes - resident - image_bytes(pixels, channels) - RESERVE_BYTES


def round_up(n, multiple=STRIDE):
  return -(-n // multiple) * multiple


def windows(length, core, halo, stride=STRIDE):
  """Windows along one axis of `length` pixels: [(start, end, keep_start,
  keep_end)], starts multiples of `stride`, keep ranges tiling [0, length).

  Windows are core + 2 * halo long (the last one up to stride - 1 longer, to
  end at the image edge; one window when the image fits), consecutive ones
  overlap by >= 2 * halo, and a kept pixel is >= halo from any cut edge.
  """
  if core % stride or halo % stride or core <= 0:
    raise ValueError(f"tile core {core} and halo {halo} must be positive multiples of "
                     f"{stride}")
  if length <= core + 2 * halo:
    return [(0, length, 0, length)]
  # As many windows as `core` needs, with the core shrunk to share the length
  # evenly (an image just over one window gets two half-size windows, not two
  # full ones).
  count = -(-(length - 2 * halo) // core)
  core = round_up(-(-(length - 2 * halo) // count), stride)
  size = core + 2 * halo
  starts = list(range(0, length - size, core))
  last = (length - size) // stride * stride
  starts = starts[:-1] if starts[-1] == last else starts
  starts.append(last)
  ends = [s + size for s in starts[:-1]] + [length]
  cuts = [0] + [s + halo for s in starts[1:]] + [length]
  return [(s, e, cuts[i], cuts[i + 1]) for i, (s, e) in enumerate(zip(starts, ends))]


@jax.jit
def _labels(state, x):
  return step_lib.predict_labels(state, x)[0].astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=("scale", "mirror"))
def _pass_probabilities(state, x, scale, mirror):
  apply = functools.partial(state.apply_fn,
                            {"params": state.params, "batch_stats": state.batch_stats},
                            train=False)
  return step_lib.pass_probabilities(apply, x, scale, mirror)


@functools.partial(jax.jit, donate_argnums=0)
def _accumulate(total, probabilities):
  return total + probabilities


@functools.partial(jax.jit, static_argnames="count")
def _average_labels(total, count):
  return jnp.argmax(total / count, axis=-1)[0].astype(jnp.uint8)


def window_labels(state, x, tta=None):
  """(1, h, w, 3) float32 -> (h, w) uint8 labels in eval mode
  (`step.predict_labels`); only the labels leave the device, not the (h, w, C)
  logits. With a `step.TTA`, its passes (`step.pass_probabilities`) run one
  compiled program at a time, their probabilities summed on the device in
  order, so a window needs the memory of its largest pass, not of all."""
  if tta is None:
    return _labels(state, x)
  passes = step_lib.tta_passes(tta)
  total = None
  for scale, mirror in passes:
    probabilities = _pass_probabilities(state, x, scale, mirror)
    total = probabilities if total is None else _accumulate(total, probabilities)
  return _average_labels(total, len(passes))


def predict_tiled(state, image, normalize, core, halo, tta=None):
  """(H, W) uint8 labels of the uint8 image, window by window; each window is
  normalised (`normalize`: uint8 (h, w, 3) -> float32) on its own, so the
  whole image is never held as float32. tta: each window's passes averaged
  (so the memory bound holds; the labels then differ from a full-image TTA
  near the window cuts, where the resized windows see other neighbours)."""
  height, width = image.shape[:2]
  out = np.empty((height, width), np.uint8)
  for y0, y1, ky0, ky1 in windows(height, core, halo):
    for x0, x1, kx0, kx1 in windows(width, core, halo):
      window = window_labels(state, normalize(image[y0:y1, x0:x1])[None], tta)
      out[ky0:ky1, kx0:kx1] = np.asarray(window)[ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
  return out


def _probe_variables(variables):
  """Every kernel 1 / (its spatial taps), biases and BN means 0, scales and
  variances 1: all activations of a non-negative input are >= 0 and each
  layer's output is non-zero wherever any of its inputs is (inf counts too)."""
  def leaf(path, x):
    name = str(getattr(path[-1], "key", path[-1]))
    if name in ("bias", "mean"):
      return jnp.zeros_like(x)
    if name in ("scale", "var"):
      return jnp.ones_like(x)
    taps = math.prod(x.shape[:-2]) if x.ndim > 2 else 1
    return jnp.full_like(x, 1.0 / taps)
  return jax.tree_util.tree_map_with_path(leaf, variables)


def receptive_margin(state, probe=512, largest=4096, channels=3):
  """Pixels an input can move a label by, in any direction, measured: the
  output support of a one-pixel input under `_probe_variables`, at two
  phases of the stride grid (the probe image grows until the support fits).
  Rounded up to the stride, + one stride for the pooling grid at a cut edge."""
  variables = _probe_variables({"params": state.params, "batch_stats": state.batch_stats})
  apply = jax.jit(lambda v, x: jnp.any(state.apply_fn(v, x, train=False) != 0, axis=-1))
  while True:
    c = probe // 2 // STRIDE * STRIDE
    centres = (c, c + STRIDE - 1)
    x = np.zeros((2, probe, probe, channels), np.float32)
    for k, centre in enumerate(centres):
      x[k, centre, centre] = 1.0
    support = np.asarray(apply(variables, x))
    reach = 0
    for k, centre in enumerate(centres):
      rows, cols = np.nonzero(support[k])
      reach = max(reach, centre - rows.min(), rows.max() - centre,
                  centre - cols.min(), cols.max() - centre)
    if reach < c - STRIDE:
      return int(round_up(reach)) + STRIDE
    if probe >= largest:
      raise ValueError(f"the receptive field reaches beyond a {probe} px probe")
    probe *= 2


def bytes_per_pixel(state, size=256, tta=None, channels=3):
  """XLA's working memory per input pixel of one window (temp + input +
  output): of the plain pass, or with a TTA of its largest pass plus the
  probabilities summed so far (`window_labels` runs the passes one by one)."""
  x = jnp.zeros((1, size, size, channels), jnp.float32)
  if tta is None:
    analysis = _labels.lower(state, x).compile().memory_analysis()
    return (analysis.temp_size_in_bytes + analysis.output_size_in_bytes + x.nbytes) / size ** 2
  largest = 0
  for scale in sorted(set(tta.scales)):  # a mirrored pass where there is one: its copy too
    analysis = _pass_probabilities.lower(state, x, scale, tta.flip).compile().memory_analysis()
    largest = max(largest, analysis.temp_size_in_bytes + analysis.output_size_in_bytes)
  summed = analysis.output_size_in_bytes  # (1, size, size, C) float32
  return (largest + summed + x.nbytes) / size ** 2


def default_core(per_pixel, halo, budget=DEFAULT_TILE_BYTES):
  """The largest core (a multiple of the stride, >= one stride) whose window
  (core + 2 * halo)^2 takes at most `budget` bytes at `per_pixel`."""
  side = math.isqrt(max(int(budget / per_pixel), 0))
  return max(STRIDE, (side - 2 * halo) // STRIDE * STRIDE)
