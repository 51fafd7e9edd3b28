"""Restore a trained model from a workdir; score it; segment image files."""
import json
import os

import jax
import numpy as np
from absl import logging
from PIL import Image

from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.train import checkpoint, description, loop
from fcnjax.train import step as step_lib

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# PIL modes of 16-bit (and 32-bit integer) grayscale images.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def restore(config, workdir, which="best"):
  """(state on the host, DataInfo) for the config's model from W/checkpoints.

  `which`: 'best' (highest saved mIoU) or 'latest'. A config whose model
  fields or class count differ from those saved with the checkpoint gets a
  ValueError naming them.
  """
  info = pipeline.get_info(config.data)
  loop.validate_config(config, info)
  saved = checkpoint.saved_config(workdir)
  if saved:
    description.check_matches(saved, description.describe(config, info), workdir)
  state, _ = loop.create_state(config, loop.build_model(config, info),
                               jax.random.key(config.seed))
  return checkpoint.restore_state(workdir, state, which=which), info


def evaluate_workdir(config, workdir, which="best", num_figure_images=6):
  """Scores the checkpoint on the eval split and writes W/eval/.

  W/eval/results.json: the `segmentation_scores` keys, boundary IoU and step;
  W/eval/predictions.png: image | truth | prediction rows; W/eval/images/:
  a few eval images as files (e.g. --input for fcnjax.predict).
  """
  state, info = restore(config, workdir, which)
  driver = loop.make_driver(config, info)
  results = loop.evaluate(driver, driver.put_state(state), config, info)
  results["step"] = int(state.step)
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


def predict_files(config, workdir, files, out_dir, which="best"):
  """Segments each image at its native size; writes <name>.png (palette PNG,
  pixel value = class id) and <name>_overlay.png. Returns the mask paths. A
  file that cannot be read is skipped with a warning naming it (it has no
  mask path in the result)."""
  state, info = restore(config, workdir, which)
  predict = jax.jit(step_lib.predict_step)
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for path in files:
    try:
      image = read_rgb(path)
    except ValueError as e:
      logging.warning("Skipping %s", e)
      continue
    preds, _ = predict(state, pipeline.normalize(image, config.data.normalization)[None])
    mask = np.asarray(preds[0]).astype(np.uint8)
    out = mask_path(path, out_dir)
    viz.save_palette_png(out, mask, info.palette)
    Image.fromarray(viz.overlay(image, mask, info.palette)).save(
        out[:-len(".png")] + "_overlay.png")
    written.append(out)
  return written
