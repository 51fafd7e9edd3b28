"""A dataset from a plain folder of images and masks (`config.data.name='folder'`).

Default layout (each name a field of config.data, so ADE20K and Cityscapes are
the same reader with other values: fcnjax/configs/fcn8s_ade20k.py,
fcn8s_cityscapes_folder.py):

  root/images/<split>/**/<stem>.{jpg,jpeg,png}   image_dir, image_suffix
  root/masks/<split>/**/<stem>.png               mask_dir, mask_suffix
  root/classes.txt                               classes_file (or class_names)

An image and a mask pair up when their paths below <split> are the same
without the suffix (sub-folders, e.g. Cityscapes' cities, are searched);
an image without a mask, a mask without an image and two files of one stem
are refused by name. classes.txt has one class per line, line i = label i:
`name`, or `name r g b` (its colour in RGB masks and in figures).

Masks: single-channel or palette PNGs whose value is the stored label, or
RGB PNGs whose colours are those of classes.txt (the VOC ignore colour
(224, 224, 192) is 255 unless a class has it). The stored values of
single-channel masks then go through reduce_zero_label (0 -> 255, v -> v - 1:
ADE20K's convention) and label_map ((stored value, label) pairs, values not
listed -> 255: e.g. Cityscapes' label ids -> train ids), in this order.
Labels must end in [0, C) or 255 (ignore), C = the number of classes.

Images: RGB files (channels=3, the default), 8-bit grayscale PNGs
(channels=1), or uint8 .npy arrays (H, W, channels) of any channel count
(image_suffix='.npy'; multispectral data scaled to 0..255); a pretrained
backbone's first conv is adapted to the channels (`assemble.adapt_input_conv`).

Every file is checked before training (`pipeline.check_splits`: readable
images of the configured channels, image and mask sizes equal, label values, colours; cached per
dataset version); the file list of a split is kept in memory for as long as
its folders' modification times are unchanged.
"""
import dataclasses
import hashlib
import os

from ml_collections import config_dict
import numpy as np
from PIL import Image

from fcnjax.data import check
from fcnjax.data import palette as palette_lib

FIELDS = {
    "root": config_dict.placeholder(str),  # the dataset folder
    "image_dir": "images",  # images of split s: root/image_dir/s/**
    "mask_dir": "masks",  # masks of split s: root/mask_dir/s/**
    "image_suffix": ".jpg,.jpeg,.png",  # comma-separated; cut off to pair (any case)
    "mask_suffix": ".png",
    "classes_file": "classes.txt",  # relative to root; read unless class_names is set
    "class_names": (),  # the class names in label order (overrides classes_file)
    "label_map": (),  # ((stored value, label), ...); unlisted values -> 255; () keeps them
    "reduce_zero_label": False,  # stored 0 -> 255, v -> v - 1 (ADE20K)
    "channels": 3,  # image channels: 3 RGB; 1 grayscale PNGs; any C from .npy (H, W, C)
}
IGNORE_INDEX = palette_lib.IGNORE_INDEX
MAX_LISTED = check.MAX_LISTED


def _root(data_config):
  root = data_config.get("root")
  check.require_dir(root, "dataset", "--config.data.root")
  return root


def read_classes(path):
  """(names, colours (C, 3) uint8 or None) of a classes.txt: one class per
  line, `name` or `name r g b`, all lines with a colour or none."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"class list {path} not found: write one class name per line "
                            "(line 1 = label 0), or set config.data.class_names")
  with open(path) as f:
    lines = f.read().rstrip().splitlines()
  names, colors = [], []
  for number, line in enumerate(lines, 1):
    words = line.split()
    if not words:
      raise ValueError(f"{path} line {number} is empty: one class per line, the line "
                       "number is the label")
    color = words[-3:] if len(words) >= 4 else []
    if color and all(w.isdigit() and int(w) < 256 for w in color):
      names.append(" ".join(words[:-3]))
      colors.append([int(w) for w in color])
    else:
      names.append(" ".join(words))
      colors.append(None)
  with_color = [c is not None for c in colors]
  if any(with_color) and not all(with_color):
    number = with_color.index(False) + 1
    raise ValueError(f"{path} line {number} ({lines[number - 1].strip()!r}) has no colour "
                     "but other lines do: give every line 'name r g b', or none")
  _check_names(names, path)
  if not any(with_color):
    return tuple(names), None
  colors = np.asarray(colors, np.uint8)
  codes = _codes(colors)
  if len(set(codes.tolist())) < len(codes):
    first = next(i for i, c in enumerate(codes) if (codes[:i] == c).any())
    raise ValueError(f"{path} line {first + 1}: colour {tuple(colors[first].tolist())} is "
                     "already another class's: each class needs its own colour")
  return tuple(names), colors


def _check_names(names, where):
  if not names:
    raise ValueError(f"{where} lists no classes")
  if len(names) > IGNORE_INDEX:
    raise ValueError(f"{where} lists {len(names)} classes: at most {IGNORE_INDEX} "
                     f"(label {IGNORE_INDEX} is ignore)")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"{where} names {repeated} more than once")


def classes(data_config):
  """(names, colours (C, 3) uint8 or None): config.data.class_names, else
  root/classes_file."""
  if data_config.get("class_names"):
    names = tuple(data_config.class_names)
    _check_names(list(names), "config.data.class_names")
    return names, None
  path = os.path.join(_root(data_config), data_config.classes_file)
  return read_classes(path)


def _codes(colors):
  """(..., 3) uint8 -> (...) int: one integer per colour."""
  colors = np.asarray(colors, np.int64)
  return (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]


def value_table(reduce_zero_label, label_map):
  """(256,) uint8 lookup of stored value -> label, or None (values kept)."""
  if not reduce_zero_label and not label_map:
    return None
  table = np.arange(256, dtype=np.int64)
  if reduce_zero_label:
    table = np.where(table == 0, IGNORE_INDEX, table - 1)
    table[IGNORE_INDEX] = IGNORE_INDEX
  if label_map:
    mapping = np.full(256, IGNORE_INDEX, np.int64)
    for value, label in label_map:
      if not (0 <= int(value) < 256 and 0 <= int(label) < 256):
        raise ValueError(f"config.data.label_map: ({value}, {label}) is not a pair of "
                         "values in [0, 255]")
      mapping[int(value)] = int(label)
    table = mapping[table]
  return table.astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class LabelRules:
  """How a mask file becomes labels (see the module docstring)."""
  num_classes: int
  colors: np.ndarray = None  # (C, 3) uint8 for RGB masks, or None
  table: np.ndarray = None  # (256,) uint8 for single-channel masks, or None
  classes_file: str = "classes.txt"

  def key(self):
    """A hash of the rules: part of the dataset version of the file checks."""
    digest = hashlib.sha256(str(self.num_classes).encode())
    for array in (self.colors, self.table):
      digest.update(b"-" if array is None else array.tobytes())
    return digest.hexdigest()

  def read(self, path):
    mode, values = check.read_mask(path, check.INDEX_MODES + ("RGB",))
    if mode == "RGB":
      label = self._from_colors(values, path)
    else:
      label = values if self.table is None else self.table[values]
    return check.check_label(label, path, self.num_classes)

  def no_colours(self, path):
    return ValueError(f"mask {path} is an RGB colour mask but {self.classes_file} gives "
                      "no colours: write 'name r g b' on each line, or save the masks "
                      "as single-channel PNGs of class indices")

  def _from_colors(self, rgb, path):
    if self.colors is None:
      raise self.no_colours(path)
    codes, inverse = np.unique(_codes(rgb), return_inverse=True)
    known = dict(zip(_codes(self.colors).tolist(), range(len(self.colors))))
    known.setdefault(int(_codes(palette_lib.IGNORE_COLOR)), IGNORE_INDEX)
    labels = np.array([known.get(c, -1) for c in codes.tolist()])
    if (labels < 0).any():
      unknown = codes[labels < 0]
      shown = ", ".join(str(((c >> 16) & 255, (c >> 8) & 255, c & 255))
                        for c in unknown[:MAX_LISTED].tolist())
      more = " ..." if len(unknown) > MAX_LISTED else ""
      what = "a colour" if len(unknown) == 1 else f"{len(unknown)} colours"
      raise ValueError(f"mask {path} has {what} not in {self.classes_file}: {shown}{more}")
    return labels[inverse.reshape(rgb.shape[:2])].astype(np.uint8)


def label_rules(data_config):
  names, colors = classes(data_config)
  classes_file = ("config.data.class_names" if data_config.get("class_names") else
                  os.path.join(data_config.root, data_config.classes_file))
  return LabelRules(len(names), colors,
                    value_table(data_config.reduce_zero_label, data_config.label_map),
                    classes_file)


class FolderSource(check.FileSource):
  """The image / mask pairs of a split, read lazily and checked."""

  def __init__(self, items, rules, channels=3):
    super().__init__(items)
    self.rules = rules
    self.channels = channels
    self.check_key = rules.key() + ("" if channels == 3 else f"-channels{channels}")

  def read_label(self, path):
    return self.rules.read(path)


def _suffixes(text, field):
  suffixes = [s.strip() for s in text.split(",") if s.strip()]
  if not suffixes:
    raise ValueError(f"config.data.{field}={text!r}: give at least one file suffix")
  return suffixes


def _walk(top, suffixes):
  """({key: [paths]} of the files under top ending in a suffix (any case), the
  key being the path below top without it; [(folder, mtime_ns)] walked; the
  other file names)."""
  longest_first = sorted(suffixes, key=len, reverse=True)
  files, folders, others = {}, [], []
  for folder, subfolders, names in os.walk(top):
    subfolders.sort()
    folders.append((folder, os.stat(folder).st_mtime_ns))
    below = os.path.relpath(folder, top)
    for name in sorted(names):
      suffix = next((s for s in longest_first if name.lower().endswith(s.lower())), None)
      if suffix is None or name.startswith("."):
        others.append(name)
        continue
      key = os.path.normpath(os.path.join(below, name[:len(name) - len(suffix)]))
      files.setdefault(key, []).append(os.path.join(folder, name))
  return files, folders, others


def _split_dir(root, sub, split, field):
  top = os.path.join(root, sub, split)
  if not os.path.isdir(top):
    parent = os.path.join(root, sub)
    present = sorted(d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d))) \
        if os.path.isdir(parent) else []
    hint = (f"{parent} holds the splits {present}: set config.data.train_split / eval_split"
            if present else f"set config.data.{field} to the folder that holds the splits")
    raise FileNotFoundError(f"folder {top} not found (split {split!r}): {hint}")
  return top


def pair_files(image_top, mask_top, image_suffixes, mask_suffixes):
  """([(image, mask)] in key order, [(folder, mtime_ns)] walked); a
  check.DataCheckError naming every unpaired or duplicate file."""
  images, image_folders, image_others = _walk(image_top, image_suffixes)
  masks, mask_folders, _ = _walk(mask_top, mask_suffixes)
  if not images and not masks:
    seen = f" (it holds e.g. {', '.join(sorted(image_others)[:3])})" if image_others else ""
    raise check.DataCheckError(f"no image ending in {', '.join(image_suffixes)} under "
                               f"{image_top}{seen}: set config.data.image_suffix")
  any_image = "{" + ",".join(image_suffixes) + "}" if len(image_suffixes) > 1 else \
      image_suffixes[0]
  problems = []
  for files, what in ((images, "images"), (masks, "masks")):
    problems += [f"{what} {' and '.join(paths)} share the stem {key!r}: keep one"
                 for key, paths in sorted(files.items()) if len(paths) > 1]
  problems += [f"image {images[k][0]} has no mask (expected "
               f"{os.path.join(mask_top, k + mask_suffixes[0])})"
               for k in sorted(images.keys() - masks.keys())]
  problems += [f"mask {masks[k][0]} has no image (expected "
               f"{os.path.join(image_top, k + any_image)})"
               for k in sorted(masks.keys() - images.keys())]
  if len(problems) == 1:
    raise check.DataCheckError(problems[0])
  if problems:
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise check.DataCheckError(f"{len(problems)} files under {image_top} and {mask_top} do "
                               "not pair up (an image and its mask share their path below "
                               f"the split without the suffix):\n  {listed}{more}")
  return [(images[k][0], masks[k][0]) for k in sorted(images)], image_folders + mask_folders


_LISTINGS = {}  # (folders, suffixes) -> (items, [(folder, mtime_ns)])


def _unchanged(folders):
  try:
    return all(os.stat(f).st_mtime_ns == t for f, t in folders)
  except OSError:
    return False


def list_split(data_config, split):
  """[(image path, mask path)] of `split`, listed again only when a folder
  below the split's image or mask folder changed (its mtime: a file added,
  removed or renamed)."""
  root = _root(data_config)
  image_top = _split_dir(root, data_config.image_dir, split, "image_dir")
  mask_top = _split_dir(root, data_config.mask_dir, split, "mask_dir")
  key = (os.path.abspath(image_top), os.path.abspath(mask_top), data_config.image_suffix,
         data_config.mask_suffix)
  cached = _LISTINGS.get(key)
  if cached is not None and _unchanged(cached[1]):
    return cached[0]
  items, folders = pair_files(image_top, mask_top,
                              _suffixes(data_config.image_suffix, "image_suffix"),
                              _suffixes(data_config.mask_suffix, "mask_suffix"))
  _LISTINGS[key] = (items, folders)
  return items


def source(data_config, split, limit=None):
  """The FolderSource of `split` (a folder name below image_dir and mask_dir)."""
  items = list_split(data_config, split)
  rules = label_rules(data_config)
  if rules.colors is None and items:  # RGB masks without colours: one error, not one per file
    try:
      with Image.open(items[0][1]) as first:
        rgb = first.mode == "RGB"
    except OSError:  # named by the file checks
      rgb = False
    if rgb:
      raise rules.no_colours(items[0][1])
  return FolderSource(items[:limit] if limit else items, rules, data_config.channels)
