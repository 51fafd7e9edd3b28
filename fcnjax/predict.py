"""Segment an image or a folder of images with a trained model.

    python -m fcnjax.predict --config=experiments/configs/fcn8s_shapes.py \
        --workdir=runs/fcn8s --input=photo.jpg --output=runs/fcn8s/predict

For each image writes <name>.png (palette PNG, pixel value = class id) and
<name>_overlay.png (the mask blended over the image). 16-bit grayscale images
are scaled to 8 bits, palette images converted to RGB. A file that cannot be
read is skipped with a warning; the rest are predicted, a summary names the
skipped files and the exit status is 1.
"""
import os
import sys

from absl import flags

from fcnjax import cli


def summary(files, written, out_dir):
  """(text, exit status): the counts, and the names of the skipped files."""
  from fcnjax import inference
  skipped = [f for f in files if inference.mask_path(f, out_dir) not in written]
  text = (f"wrote {len(written)} masks (+ overlays) to {out_dir}: {len(written)} "
          f"predicted, {len(skipped)} skipped")
  if skipped:
    return text + " (unreadable: " + ", ".join(map(os.path.basename, skipped)) + ")", 1
  return text, 0


def predict(config, workdir, input_path, out_dir=None, which="best"):
  """Segments the image or folder `input_path` into `out_dir` (default
  W/predict), prints the summary; returns the exit status (1: files skipped)."""
  from fcnjax import inference
  out_dir = out_dir or os.path.join(workdir, "predict")
  files = inference.list_images(input_path)
  written = inference.predict_files(config, workdir, files, out_dir, which)
  text, status = summary(files, written, out_dir)
  print(text, file=sys.stderr if status else sys.stdout)
  return status


def main(argv):
  del argv
  cli.start()
  return predict(cli.FLAGS.config, cli.FLAGS.workdir, cli.FLAGS.input, cli.FLAGS.output,
                 cli.FLAGS.checkpoint)


def run():
  cli.define_flags(checkpoint_choice=True)
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Output folder (default: WORKDIR/predict).")
  flags.mark_flag_as_required("input")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
