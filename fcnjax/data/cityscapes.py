"""Cityscapes (tfds `cityscapes/semantic_segmentation`), 19 train ids + 255.

tfds needs the official zips in its manual folder (leftImg8bit_trainvaltest.zip,
gtFine_trainvaltest.zip in <data_dir>/downloads/manual); labels are mapped
from the 34 label ids to the 19 evaluation classes, everything else 255.
"""
import numpy as np

from fcnjax.data.tfds_source import tfds_source

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
               "truck", "bus", "train", "motorcycle", "bicycle")
# label id -> train id (cityscapesScripts labels.py); unlisted ids are ignored.
ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def label_map():
  table = np.full(256, 255, np.uint8)
  for label_id, train_id in ID_TO_TRAIN_ID.items():
    table[label_id] = train_id
  return tuple(table.tolist())


def source(data_config, split, limit=None):
  return tfds_source("cityscapes/semantic_segmentation", data_config.data_dir, split,
                              limit, image_key="image_left", label_key="segmentation_label",
                              label_map=label_map())
