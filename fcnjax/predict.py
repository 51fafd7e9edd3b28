"""Segment an image or a folder of images with a trained model.

    python -m fcnjax.predict --config=experiments/configs/fcn8s_shapes.py \
        --workdir=runs/fcn8s --input=photo.jpg --output=runs/fcn8s/predict

For each image writes <name>.png (palette PNG, pixel value = class id) and
<name>_overlay.png (the mask blended over the image).
"""
import os

from absl import app, flags

from fcnjax import cli

cli.define_flags()
flags.DEFINE_string("input", None, "An image file or a folder of images.")
flags.DEFINE_string("output", None, "Output folder (default: WORKDIR/predict).")
flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(path):
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
  """Runs the model at each image's native size; returns the written mask paths."""
  import jax
  import numpy as np
  from PIL import Image
  from fcnjax import viz
  from fcnjax.data import pipeline
  from fcnjax.train import checkpoint, loop
  from fcnjax.train import step as step_lib

  info = pipeline.get_info(config.data)
  model = loop.build_model(config, info)
  state, _ = loop.create_state(config, model, jax.random.key(config.seed))
  state = checkpoint.restore_state(workdir, state, which=which)
  predict = jax.jit(step_lib.predict_step)
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for path in files:
    try:
      image = np.asarray(Image.open(path).convert("RGB"))
    except OSError as e:
      raise ValueError(f"{path}: not a readable image ({e})") from None
    normed = pipeline.normalize(image, config.data.normalization)[None]
    preds, _ = predict(state, normed)
    mask = np.asarray(preds[0]).astype(np.uint8)
    stem = os.path.splitext(os.path.basename(path))[0]
    mask_path = os.path.join(out_dir, f"{stem}.png")
    viz.save_palette_png(mask_path, mask, info.palette)
    Image.fromarray(viz.overlay(image, mask, info.palette)).save(
        os.path.join(out_dir, f"{stem}_overlay.png"))
    written.append(mask_path)
  return written


def main(argv):
  del argv
  cli.start()
  if not flags.FLAGS.input:
    raise app.UsageError("--input is required (an image or a folder of images)")
  out_dir = flags.FLAGS.output or os.path.join(cli.FLAGS.workdir, "predict")
  written = predict_files(cli.FLAGS.config, cli.FLAGS.workdir, list_images(flags.FLAGS.input),
                          out_dir, flags.FLAGS.checkpoint)
  print(f"wrote {len(written)} masks (+ overlays) to {out_dir}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
