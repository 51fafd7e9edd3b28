"""Restore a trained model from a workdir; score it; segment image files."""
import json
import os

import jax
import numpy as np
from PIL import Image

from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.train import checkpoint, loop, parallel
from fcnjax.train import step as step_lib

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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
    checkpoint.check_matches(saved, checkpoint.describe(config, info), workdir)
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
  driver = parallel.make_driver(config.parallel, loss_reduction=config.loss_reduction,
                                num_classes=info.num_classes,
                                boundary_width=config.boundary_width,
                                num_devices=config.get("num_devices"))
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
  """An image file, or the images of a folder (sorted)."""
  if os.path.isdir(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
      raise FileNotFoundError(f"--input={path}: no {IMAGE_SUFFIXES} images in the folder")
    return files
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--input={path}: no such file or folder")
  return [path]


def predict_files(config, workdir, files, out_dir, which="best"):
  """Segments each image at its native size; writes <name>.png (palette PNG,
  pixel value = class id) and <name>_overlay.png. Returns the mask paths."""
  state, info = restore(config, workdir, which)
  predict = jax.jit(step_lib.predict_step)
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for path in files:
    try:
      image = np.asarray(Image.open(path).convert("RGB"))
    except OSError as e:
      raise ValueError(f"{path}: not a readable image ({e})") from None
    preds, _ = predict(state, pipeline.normalize(image, config.data.normalization)[None])
    mask = np.asarray(preds[0]).astype(np.uint8)
    stem = os.path.splitext(os.path.basename(path))[0]
    mask_path = os.path.join(out_dir, f"{stem}.png")
    viz.save_palette_png(mask_path, mask, info.palette)
    Image.fromarray(viz.overlay(image, mask, info.palette)).save(
        os.path.join(out_dir, f"{stem}_overlay.png"))
    written.append(mask_path)
  return written
