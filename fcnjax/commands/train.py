"""Train (with periodic evaluation) from a config.

    fcnjax-train --config=fcn8s_shapes --workdir=runs/fcn8s

Re-running the same command resumes from the newest checkpoint in --workdir.
"""
from absl import logging

from fcnjax.runtime import cli
from fcnjax.train import loop


def main(argv):
  del argv
  cli.start()
  scores = loop.train_and_evaluate(cli.FLAGS.config, cli.FLAGS.workdir)
  if scores:
    logging.info("Final mIoU %.4f, pixel acc %.4f, boundary IoU %.4f",
                 scores["mean_iou"], scores["pixel_acc"], scores["boundary_iou"])
    print(f"final: mean_iou={scores['mean_iou']:.4f} pixel_acc={scores['pixel_acc']:.4f} "
          f"boundary_iou={scores['boundary_iou']:.4f}")


def run():
  cli.define_flags()
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
