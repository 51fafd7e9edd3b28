"""Segment an image or a folder of images with a trained model.

    python -m fcnjax.predict --config=experiments/configs/fcn8s_shapes.py \
        --workdir=runs/fcn8s --input=photo.jpg --output=runs/fcn8s/predict

For each image writes <name>.png (palette PNG, pixel value = class id) and
<name>_overlay.png (the mask blended over the image).
"""
import os

from absl import app, flags

from fcnjax import cli



def main(argv):
  del argv
  cli.start()
  from fcnjax import inference
  out_dir = cli.FLAGS.output or os.path.join(cli.FLAGS.workdir, "predict")
  written = inference.predict_files(cli.FLAGS.config, cli.FLAGS.workdir,
                                    inference.list_images(cli.FLAGS.input), out_dir,
                                    cli.FLAGS.checkpoint)
  print(f"wrote {len(written)} masks (+ overlays) to {out_dir}")


def run():
  cli.define_flags(checkpoint_choice=True)
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Output folder (default: WORKDIR/predict).")
  flags.mark_flag_as_required("input")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
