"""Label conventions: the ignore label and the PASCAL VOC palette (bit-interleaved class index)."""
import numpy as np

IGNORE_INDEX = 255  # the label every loader, loss and metric skips
IGNORE_COLOR = (224, 224, 192)  # its colour in VOC masks


def palette(num_classes=256):
  """(num_classes, 3) uint8: class c's colour from the bits of c, as in VOC."""
  colors = np.zeros((num_classes, 3), np.uint8)
  for c in range(num_classes):
    r = g = b = 0
    v = c
    for shift in range(7, -1, -1):
      r |= (v & 1) << shift
      g |= ((v >> 1) & 1) << shift
      b |= ((v >> 2) & 1) << shift
      v >>= 3
    colors[c] = (r, g, b)
  return colors

