"""Oxford-IIIT Pet (tfds `oxford_iiit_pet`) as 3-class segmentation.

The trimap's 1 = pet, 2 = background, 3 = border become classes 1, 0 and 2;
with data_config.pets_boundary_ignore (default) the border is 255 (ignored),
as it marks uncertain pixels.
"""
import numpy as np

from fcnjax.data.tfds_source import tfds_source

FIELDS = {"pets_boundary_ignore": True}  # the trimap border as 255 (ignored)
CLASS_NAMES = ("background", "pet", "border")


def label_map(boundary_ignore=True):
  table = np.full(256, 255, np.uint8)
  table[1], table[2], table[3] = 1, 0, 255 if boundary_ignore else 2
  return tuple(table.tolist())


def source(data_config, split, limit=None):
  split = {"validation": "test"}.get(split, split)  # the dataset has train / test
  return tfds_source("oxford_iiit_pet", data_config.data_dir, split, limit,
                              label_map=label_map(data_config.pets_boundary_ignore))
