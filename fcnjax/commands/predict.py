"""Segment an image or a folder of images with a trained model.

    fcnjax-predict --config=fcn8s_shapes \
        --workdir=runs/fcn8s --input=photo.jpg --output=runs/fcn8s/predict

For each image writes <name>.png (palette PNG, pixel value = class id) and
<name>_overlay.png (the mask blended over the image). 16-bit grayscale images
are scaled to 8 bits, palette images converted to RGB. A file that cannot be
read, or whose prediction fails, is skipped with a warning; the rest are
predicted, a summary names the skipped files and the exit status is 1.

Images of any size are segmented in bounded memory: larger than a tile
(--tile), tile by tile with a halo of the model's receptive field, so the
labels equal one full-image pass (fcnjax/tiles.py). --tta_scales=0.75,1,1.25
--tta_flip labels each image by the average of those passes (within each tile).
"""
import os
import sys

from absl import flags

from fcnjax import inference
from fcnjax.runtime import cli
from fcnjax.train import step


def summary(results, out_dir):
  """(text, exit status) of [(path, mask path or None, error or None)]: the
  counts, then the skipped files named (unreadable ones, then failures with
  their error)."""
  written = [out for _, out, _ in results if out]
  unreadable = [os.path.basename(p) for p, _, e in results if e == "unreadable"]
  failed = [f"{os.path.basename(p)} ({e})" for p, out, e in results
            if not out and e != "unreadable"]
  text = (f"wrote {len(written)} masks (+ overlays) to {out_dir}: {len(written)} "
          f"predicted, {len(unreadable) + len(failed)} skipped")
  named = (["unreadable: " + ", ".join(unreadable)] if unreadable else []) + (
      ["failed: " + "; ".join(failed)] if failed else [])
  if named:
    return text + " (" + "; ".join(named) + ")", 1
  return text, 0


def predict(config, workdir, input_path, out_dir=None, which="best", tile=0, tta=None):
  """Segments the image or folder `input_path` into `out_dir` (default
  W/predict), prints the summary; returns the exit status (1: files skipped).
  tile: the tile core in pixels (0: from the model's memory per pixel; None:
  one full-image pass per image), see `inference.tiling`; tta: a `step.TTA`."""
  out_dir = out_dir or os.path.join(workdir, "predict")
  files = inference.list_images(input_path)
  results = list(inference.predict_each(config, workdir, files, out_dir, which, tile, tta))
  text, status = summary(results, out_dir)
  print(text, file=sys.stderr if status else sys.stdout)
  return status


def main(argv):
  del argv
  cli.start()
  tile = cli.FLAGS.tile if cli.FLAGS.tile >= 0 else None
  tta = step.check_tta(cli.FLAGS.tta_scales, cli.FLAGS.tta_flip)  # before anything is read
  return predict(cli.FLAGS.config, cli.FLAGS.workdir, cli.FLAGS.input, cli.FLAGS.output,
                 cli.FLAGS.checkpoint, tile, tta)


def run():
  cli.define_flags(checkpoint_choice=True)
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Output folder (default: WORKDIR/predict).")
  flags.DEFINE_integer("tile", 0, "Images larger than a tile are segmented tile by tile "
                       "(labels equal to one full-image pass): the tile core in pixels, "
                       "rounded up to a multiple of 32; 0: from the model's memory per "
                       "pixel; -1: never tile.")
  cli.define_tta_flags("label by")
  flags.mark_flag_as_required("input")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
