"""PASCAL VOC 2012 segmentation (+ SBD) from folders on disk (no download).

Layout (the official tarballs, unpacked):
  manual_dir = .../VOCdevkit/VOC2012   JPEGImages/<id>.jpg, SegmentationClass/<id>.png
                                       (palette PNGs: pixel value = class, 255 = ignore),
                                       ImageSets/Segmentation/{train,val}.txt
  sbd_dir    = .../benchmark_RELEASE   dataset/img/<id>.jpg, dataset/cls/<id>.mat
                                       (GTcls.Segmentation), dataset/{train,val}.txt

Splits (the FCN convention):
  'train'       SBD train minus the VOC val images (VOC train.txt without SBD)
  'seg11valid'  VOC val (ImageSets/Segmentation/seg11valid.txt if present, else
                val.txt) minus SBD train images
  'train_voc', 'val'  the plain VOC lists
  a path ending in .txt: an explicit id list, read from the VOC folders
"""
import os

from ml_collections import config_dict
import numpy as np

from fcnjax.data import check

# The VOC2012 folder and the optional SBD folder (None: VOC's own train list).
FIELDS = {"manual_dir": config_dict.placeholder(str), "sbd_dir": config_dict.placeholder(str)}
CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")

def read_ids(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"split file {path} not found: expected one image id per line")
  with open(path) as f:
    ids = [line.split()[0] for line in f if line.strip()]
  if not ids:
    raise ValueError(f"split file {path} is empty: list one image id per line")
  seen, repeated = set(), []
  for i in ids:  # a repeated id would silently weigh that image twice
    if i in seen and i not in repeated:
      repeated.append(i)
    seen.add(i)
  if repeated:
    raise ValueError(f"split file {path} lists {len(repeated)} ids more than once: "
                     f"{', '.join(repeated[:10])}{' ...' if len(repeated) > 10 else ''}")
  return ids


def read_label_png(path, num_classes=len(CLASS_NAMES)):
  """Palette-index PNG -> uint8 (H, W); values must be in [0, C) or 255."""
  return check.check_label(check.read_mask(path)[1], path, num_classes)


def read_label_mat(path, num_classes=len(CLASS_NAMES)):
  """SBD cls/<id>.mat -> uint8 (H, W) from GTcls.Segmentation."""
  import scipy.io
  if not os.path.isfile(path):
    raise FileNotFoundError(f"SBD label {path} not found")
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises several types for bad files
    raise ValueError(f"SBD label {path} is not a readable .mat file ({e})") from None
  try:
    label = mat["GTcls"][0]["Segmentation"][0]
  except (KeyError, IndexError, ValueError):
    raise ValueError(f"SBD label {path} has no GTcls.Segmentation field (keys: "
                     f"{sorted(k for k in mat if not k.startswith('__'))}): use the "
                     "dataset/cls/*.mat files of SBD") from None
  return check.check_label(np.asarray(label).astype(np.uint8), path, num_classes)


class VOCSource(check.FileSource):
  """VOC palette PNGs or SBD .mat labels, read lazily and checked."""

  def read_label(self, path):
    return read_label_mat(path) if path.endswith(".mat") else read_label_png(path)


def _voc_items(root, ids):
  items = [(os.path.join(root, "JPEGImages", f"{i}.jpg"),
            os.path.join(root, "SegmentationClass", f"{i}.png")) for i in ids]
  for image, label in items:
    if not os.path.isfile(image):
      raise FileNotFoundError(f"image {image} listed in the split but not found")
    if not os.path.isfile(label):
      raise FileNotFoundError(f"mask {label} for a listed id not found: every listed id "
                              "needs a SegmentationClass/<id>.png")
  return items


def source(data_config, split, limit=None):
  """The VOCSource of `split` (see the module docstring)."""
  root, sbd = data_config.manual_dir, data_config.get("sbd_dir")
  check.require_dir(root, "VOC", "--config.data.manual_dir")
  sets = os.path.join(root, "ImageSets", "Segmentation")
  if split.endswith(".txt"):
    items = _voc_items(root, read_ids(split))
  elif split == "train_voc":
    items = _voc_items(root, read_ids(os.path.join(sets, "train.txt")))
  elif split == "val":
    items = _voc_items(root, read_ids(os.path.join(sets, "val.txt")))
  elif split == "seg11valid":
    listed = os.path.join(sets, "seg11valid.txt")
    ids = read_ids(listed if os.path.isfile(listed) else os.path.join(sets, "val.txt"))
    if sbd:
      check.require_dir(sbd, "SBD", "--config.data.sbd_dir")
      exclude = set(read_ids(os.path.join(sbd, "dataset", "train.txt")))
      ids = [i for i in ids if i not in exclude]
    items = _voc_items(root, ids)
  elif split == "train":
    if not sbd:
      items = _voc_items(root, read_ids(os.path.join(sets, "train.txt")))
    else:
      check.require_dir(sbd, "SBD", "--config.data.sbd_dir")
      exclude = set(read_ids(os.path.join(sets, "val.txt")))
      ids = [i for i in read_ids(os.path.join(sbd, "dataset", "train.txt")) if i not in exclude]
      items = [(os.path.join(sbd, "dataset", "img", f"{i}.jpg"),
                os.path.join(sbd, "dataset", "cls", f"{i}.mat")) for i in ids]
      for _, label in items:
        if not os.path.isfile(label):
          raise FileNotFoundError(f"SBD label {label} for a listed id not found")
  else:
    raise ValueError(f"VOC split {split!r}; valid: 'train', 'seg11valid', 'train_voc', "
                     "'val' or a path to an id list (.txt)")
  return VOCSource(items[:limit] if limit else items)
