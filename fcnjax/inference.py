"""Restore a trained model from a workdir; score it; segment image files."""
import functools
import json
import math
import os

import jax
import numpy as np
from absl import logging
from PIL import Image

from fcnjax import metrics as seg_metrics
from fcnjax import tiles, viz
from fcnjax.data import check, pipeline
from fcnjax.train import assemble, checkpoint, description, loop
from fcnjax.train import step as step_lib

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# PIL modes of 16-bit (and 32-bit integer) grayscale images.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def restore(run, workdir, which="best"):
  """(state on the host, DataInfo) for the run's model from W/checkpoints.

  `run`: a config (checked here) or its `assemble.Prepared`. `which`: 'best'
  (highest saved mIoU) or 'latest'. A config whose model fields or class count
  differ from those saved with the checkpoint gets a ValueError naming them.
  """
  config, info, model = assemble.prepare(run)
  saved = checkpoint.saved_config(workdir)
  if saved:
    description.check_matches(saved, description.describe(config, info), workdir)
  state, _ = assemble.create_state(config, model, jax.random.key(config.seed))
  return checkpoint.restore_state(workdir, state, which=which), info


class HostEvaluation:
  """A stand-in for the training driver in `loop.evaluate` that segments on
  this host: a batch at a time, or with a tile core each image window by
  window (`tiles.predict_tiled`: native-size evaluation of large images in
  bounded memory, the labels of one full-image pass), test-time augmented
  with a `step.TTA`; counted by `metrics.counts` like every other score."""

  def __init__(self, config, info, core=None, halo=None, tta=None):
    self.core, self.halo, self.tta = core, halo, tta
    self.counts = jax.jit(functools.partial(
        seg_metrics.counts, num_classes=info.num_classes,
        width=config.get("boundary_width", 2)))
    self.labels = jax.jit(step_lib.predict_labels, static_argnames="tta")

  def put_state(self, state):
    return state

  def evaluate(self, state, batch):
    """{'hist', 'boundary_inter', 'boundary_union'} of a normalised batch (N, H, W, 3)."""
    if self.core is None:
      return self.counts(batch["label"], self.labels(state, batch["image"], self.tta))
    total = None
    for image, label in zip(batch["image"], batch["label"]):
      preds = tiles.predict_tiled(state, image, lambda x: x, self.core, self.halo, self.tta)
      out = self.counts(label[None], preds[None].astype(np.int32))
      total = out if total is None else jax.tree.map(np.add, total, out)
    return total


def evaluate_workdir(run, workdir, which="best", num_figure_images=6, tile=None, tta=None):
  """Scores the checkpoint of `run` (a config or its `assemble.Prepared`) on
  the eval split and writes W/eval/.

  W/eval/results.json: the `segmentation_scores` keys, boundary IoU and step,
  and with a `step.TTA` the test-time augmented scores under 'tta';
  W/eval/predictions.png: image | truth | prediction rows; W/eval/images/:
  a few eval images as files (e.g. --input for fcnjax.commands.predict). tile: None
  scores batches on the devices; a number (0: automatic, see `tiling`)
  segments each image tile by tile on this host (`HostEvaluation`).
  """
  run = assemble.prepare(run)
  config = run.config
  state, info = restore(run, workdir, which)
  channels = config.data.get("channels", 3)
  if tile is None:
    driver = assemble.make_driver(config, info)
  else:
    driver = HostEvaluation(config, info, *tiling(state, tile, channels=channels))
  results = loop.evaluate(driver, driver.put_state(state), config, info)
  results["step"] = int(state.step)
  if tta is not None:
    host = HostEvaluation(config, info, *tiling(state, tile, tta, channels), tta=tta)
    results["tta"] = {"scales": list(tta.scales), "flip": tta.flip,
                      **loop.evaluate(host, state, config, info)}
  if jax.process_index() == 0:
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
    batch = next(iter(pipeline.eval_batches(config.data, num_figure_images)))
    preds, _ = jax.jit(step_lib.predict_step)(state, batch["image"])
    images = pipeline.denormalize(batch["image"], config.data.normalization)
    viz.save_prediction_grid(os.path.join(out_dir, "predictions.png"), images,
                             batch["label"], np.asarray(preds), info.palette,
                             class_names=info.class_names)
    for i, image in enumerate(images):
      Image.fromarray(image).save(os.path.join(out_dir, "images", f"val_{i:03d}.png"))
  return results


def list_images(path):
  """An image file, or the files of a folder with an image suffix (sorted)."""
  if os.path.isdir(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
      raise FileNotFoundError(f"--input={path}: no {IMAGE_SUFFIXES} images in the folder")
    return files
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--input={path}: no such file or folder")
  return [path]


def _scaled_to_8_bits(image):
  """(H, W, 3) uint8 from a 16-bit (or 32-bit integer) grayscale image:
  0..65535 maps linearly onto 0..255 (rounded), instead of clipping at 255."""
  values = np.asarray(image, dtype=np.float64)
  gray = np.clip(np.round(values * (255 / 65535)), 0, 255).astype(np.uint8)
  return np.repeat(gray[..., None], 3, axis=-1)


def read_rgb(path):
  """The image file at `path` as (H, W, 3) uint8 RGB.

  16-bit grayscale is scaled to 8 bits (`_scaled_to_8_bits`); palette images
  are looked up in their palette; grayscale, bilevel and CMYK are converted to
  RGB; an alpha channel is dropped. A file that is not a readable image raises
  ValueError naming it.
  """
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode in SIXTEEN_BIT_MODES:
        return _scaled_to_8_bits(image)
      if image.mode == "P":  # palette: through RGBA, which keeps a transparency entry
        image = image.convert("RGBA")
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def mask_path(path, out_dir):
  """Where the mask of the image `path` is written: out_dir/<name>.png."""
  return os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".png")


def tiling(state, tile=0, tta=None, channels=3, pixels=0):
  """(core, halo) of the windows `predict_image` uses: halo from the model's
  measured receptive field (`tiles.receptive_margin`); core `tile` (rounded
  up to the stride), 0: the largest whose window, test-time augmentation's
  passes included, fits what `tiles.PROCESS_BYTES` leaves beside this
  process's resident memory and an image of `pixels` (`tiles.window_budget`),
  None: no tiling (one full-image pass). channels: the model's input channels."""
  if tile is None:
    return None, None
  if tile < 0:
    raise ValueError(f"--tile={tile}: must be a positive number of pixels, or 0 (automatic)")
  halo = tiles.receptive_margin(state, channels=channels)
  if tile:
    core = tiles.round_up(tile)
  else:
    per_pixel = tiles.bytes_per_pixel(state, tta=tta, channels=channels)
    budget = tiles.window_budget(pixels, channels)
    core = tiles.default_core(per_pixel, halo, budget)
    if (core + 2 * halo) ** 2 * per_pixel > budget:
      logging.warning("Tiled inference: %d MB left for a window under the %d MB process "
                      "budget; the smallest window (%d px) may exceed it", budget // 2 ** 20,
                      tiles.PROCESS_BYTES // 2 ** 20, core + 2 * halo)
  logging.info("Tiled inference: %d px tiles, %d px halo", core, halo)
  return core, halo


def image_pixels(path):
  """H * W of an image file or .npy array from its header (0 if unreadable:
  the read itself reports it)."""
  try:
    if path.lower().endswith(".npy"):
      return math.prod(np.load(path, mmap_mode="r").shape[:2])
    with Image.open(path) as image:
      return image.size[0] * image.size[1]
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
    return 0


def check_fits(shape, per_pixel):
  """MemoryError unless one pass over an image of `shape` (H, W) needs, at
  `per_pixel` bytes, less than the memory available now: a pass that does not
  fit aborts the whole process in XLA's allocator instead of raising."""
  need = shape[0] * shape[1] * per_pixel
  available = None
  try:
    with open("/proc/meminfo") as f:
      available = 1024 * next(int(line.split()[1]) for line in f
                              if line.startswith("MemAvailable:"))
  except (OSError, StopIteration, ValueError):  # not Linux: cannot tell
    return
  if need > available:
    raise MemoryError(f"{shape[0]}x{shape[1]} in one pass needs about {need / 2 ** 30:.1f} GB, "
                      f"{available / 2 ** 30:.1f} GB available: use --tile=0")


def predict_image(state, image, normalization, core, halo, tta=None):
  """(H, W) uint8 labels of an (H, W, 3) uint8 image: windows of core + 2 * halo
  (one pass when it fits, or when core is None); see `fcnjax.tiles`. tta: a
  `step.TTA`, its passes averaged within each window."""
  norm = functools.partial(pipeline.normalize, mode=normalization)
  if core is None:
    return np.asarray(tiles.window_labels(state, norm(image)[None], tta))
  return tiles.predict_tiled(state, image, norm, core, halo, tta)


def save_outputs(path, image, mask, palette, out_dir, rows=512):
  """Writes out_dir/<name>.png (palette mask) and <name>_overlay.png, the
  overlay blended a band of rows at a time (float32 of one band, not of the image)."""
  out = mask_path(path, out_dir)
  viz.save_palette_png(out, mask, palette)
  blend = np.empty(image.shape[:2] + (3,), np.uint8)
  for y in range(0, image.shape[0], rows):
    blend[y:y + rows] = viz.overlay(image[y:y + rows], mask[y:y + rows], palette)
  Image.fromarray(blend).save(out[:-len(".png")] + "_overlay.png")
  return out


def predict_each(config, workdir, files, out_dir, which="best", tile=0, tta=None):
  """Yields (path, mask path or None, error message or None) for each file,
  segmented at its native size (tiled: `tiling`; tta: a `step.TTA`, its
  passes within each tile). A file that cannot be read, or whose prediction
  fails, is logged and named, and the next one goes on."""
  state, info = restore(config, workdir, which)
  channels = config.data.get("channels", 3)
  largest = max([image_pixels(path) for path in files], default=0) if tile == 0 else 0
  core, halo = tiling(state, tile, tta, channels, largest)
  per_pixel = tiles.bytes_per_pixel(state, tta=tta, channels=channels) if core is None else None
  os.makedirs(out_dir, exist_ok=True)
  for path in files:
    try:
      image = read_rgb(path) if channels == 3 else check.read_image(path, channels)
    except ValueError as e:
      logging.warning("Skipping %s", e)
      yield path, None, "unreadable"
      continue
    try:
      if per_pixel:
        check_fits(image.shape[:2], per_pixel)
      mask = predict_image(state, image, config.data.normalization, core, halo, tta)
      out = save_outputs(path, image, mask, info.palette, out_dir)
    except Exception as e:  # noqa: BLE001  one image's failure must not stop the folder
      logging.warning("Failed on %s: %s: %s", path, type(e).__name__, e)
      yield path, None, f"{type(e).__name__}: {e}"
      continue
    yield path, out, None


def predict_files(config, workdir, files, out_dir, which="best", tile=0):
  """Segments each image (`predict_each`); writes <name>.png (palette PNG,
  pixel value = class id) and <name>_overlay.png. Returns the mask paths of
  the files that were predicted."""
  return [out for _, out, _ in predict_each(config, workdir, files, out_dir, which, tile) if out]
