"""Evaluate a trained model on the validation split.

    fcnjax-evaluate --config=fcn8s_shapes --workdir=runs/fcn8s

Writes W/eval/results.json (pixel_acc, mean_acc, mean_iou, fw_iou,
per_class_iou, boundary IoU, step), W/eval/predictions.png and a few
validation images in W/eval/images/. With --tile (e.g. --tile=0 and
--config.eval_batch_size=1 for native sizes) each image is segmented tile by
tile on the host, in bounded memory, with the labels of one full-image pass.
--tta_scales=0.75,1,1.25 --tta_flip also reports the test-time augmented scores
(softmax averaged over the scaled and mirrored passes, within each tile).
"""
import json

from absl import flags

from fcnjax import inference
from fcnjax.runtime import cli
from fcnjax.train import step


def main(argv):
  del argv
  cli.start()
  tile = cli.FLAGS.tile if cli.FLAGS.tile >= 0 else None
  tta = step.check_tta(cli.FLAGS.tta_scales, cli.FLAGS.tta_flip)  # before anything is read
  results = inference.evaluate_workdir(cli.FLAGS.config, cli.FLAGS.workdir,
                                       cli.FLAGS.checkpoint, cli.FLAGS.num_figure_images, tile,
                                       tta)
  print(json.dumps(_scalars(results)))


def _scalars(results):
  return {k: _scalars(v) if isinstance(v, dict) else v for k, v in results.items()
          if not isinstance(v, list) or k == "scales"}


def run():
  cli.define_flags(checkpoint_choice=True)
  flags.DEFINE_integer("num_figure_images", 6, "Validation images in predictions.png.")
  flags.DEFINE_integer("tile", -1, "-1: score batches on the devices; else segment each "
                       "image on the host tile by tile (native-size evaluation of large "
                       "images in bounded memory, same labels): the tile core in pixels, "
                       "0: from the model's memory per pixel.")
  cli.define_tta_flags("also score (results.json 'tta', beside the plain scores)")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
