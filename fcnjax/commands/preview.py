"""A grid of training images with their palette-coloured masks.

    fcnjax-preview --dataset=shapes --out=grid.png
    fcnjax-preview --dataset=voc --manual_dir=/data/VOC2012 --split=eval --out=voc.png
    fcnjax-preview --dataset=folder --root=/data/mine --out=mine.png
"""
from absl import flags
from PIL import Image

from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.runtime import cli

FLAGS = flags.FLAGS


def preview_grid(data_config, split, num, size):
  """(2*size, num*size, 3) uint8: images on top, coloured masks below
  (`viz.image_mask_grid` of the split's first `num` examples)."""
  info = pipeline.get_info(data_config)
  source = pipeline.get_source(data_config, split)
  pairs = [source[i] for i in range(min(num, len(source)))]
  return viz.image_mask_grid(pairs, info.palette, size)


def main(argv):
  del argv
  config = pipeline.default_data_config()
  config.update(dict(name=FLAGS.dataset, tfds_config=FLAGS.tfds_config,
                     data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
                     sbd_dir=FLAGS.sbd_dir, root=FLAGS.root))
  Image.fromarray(preview_grid(config, FLAGS.split, FLAGS.num, FLAGS.size)).save(FLAGS.out)
  print(f"wrote {FLAGS.out}")


def run():
  flags.DEFINE_string("dataset", "shapes", "shapes | voc | pets | cityscapes | folder")
  flags.DEFINE_string("tfds_config", "default", "Builder config of the shapes dataset.")
  flags.DEFINE_string("data_dir", None, "tfds data dir (None: the tfds default).")
  flags.DEFINE_string("manual_dir", None, "VOC folder (VOCdevkit/VOC2012).")
  flags.DEFINE_string("sbd_dir", None, "SBD folder (benchmark_RELEASE).")
  flags.DEFINE_string("root", None, "The folder dataset's root: images/<split>/, "
                      "masks/<split>/, classes.txt (docs/data.md).")
  flags.DEFINE_enum("split", "train", ["train", "eval"], "Which split to show.")
  flags.DEFINE_integer("num", 8, "Number of examples.")
  flags.DEFINE_integer("size", 128, "Each tile is resized to size x size.")
  flags.DEFINE_string("out", "grid.png", "Output PNG.")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
