"""The checks of file-backed datasets: per example, and every file once before training.

`FileSource` is the random-access (image, label) list of the datasets read
from files (voc, folder): each example is read through `read_image`, the
dataset's own `read_label` (ending in `check_label`) and an image / mask size
check, so a bad file stops with an error naming it, whenever it is read.

`check_split` reads every example of a split (`pipeline.check_splits`: the
train and eval splits, before the first training step): readable files, RGB
images, index masks, labels in [0, C) or 255, image and mask sizes equal.
Sources that are generated or already decoded in memory (shapes, tfds) are
skipped. A passed check is remembered in a small JSON file named by a hash of the file list with each
file's size and mtime, and of the source's label rules (`check_key`): the
dataset version. The next run with the same files and rules does not read
them again. The cache folder is $FCNJAX_DATA_CHECK_CACHE, default
~/.cache/fcnjax/data_checks.
"""
import concurrent.futures
import hashlib
import json
import os

from absl import logging
import numpy as np
from PIL import Image

from fcnjax.data import palette as palette_lib

CHECK_VERSION = 1  # bump when the checks change, so old passes are not trusted
MAX_LISTED = 10  # bad files named in the error; the count covers all of them
PROGRESS_MIN = 200  # examples from which a progress bar is shown
IGNORE_INDEX = palette_lib.IGNORE_INDEX


class DataCheckError(ValueError):
  """Files of a split that fail the checks; the message names them."""


def require_dir(path, what, option):
  """FileNotFoundError naming the config field unless `path` is a folder."""
  if not path or not os.path.isdir(path):
    raise FileNotFoundError(f"{what} folder {path!r} not found: set {option} to the "
                            "unpacked folder (see docs/data.md)")


def read_image(path, channels=3):
  """uint8 (H, W, channels): an RGB file (3), an 8-bit grayscale one (1), or
  a uint8 .npy array (H, W, channels); a clear error for missing, corrupt or
  other files."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image {path} not found")
  if path.lower().endswith(".npy"):
    return _read_array(path, channels)
  want = {3: "RGB", 1: "L"}.get(channels)
  if want is None:
    raise ValueError(f"image {path}: config.data.channels={channels} needs .npy arrays "
                     "(H, W, channels); image files hold 1 (grayscale) or 3 (RGB)")
  try:
    with Image.open(path) as img:
      img.load()
      if img.mode != want:
        raise ValueError(f"image {path} has mode {img.mode}, expected {want} "
                         f"(config.data.channels={channels}): convert it "
                         f"(e.g. PIL Image.convert({want!r}))")
      image = np.asarray(img)
  except OSError as e:
    raise ValueError(f"image {path} is not a readable image ({e}); re-extract it") from None
  return image if channels == 3 else image[..., None]


def _read_array(path, channels):
  try:
    image = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"image {path} is not a readable .npy array ({e})") from None
  if image.ndim == 2 and channels == 1:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] != channels:
    raise ValueError(f"image {path} has shape {image.shape}, expected (H, W, {channels}) "
                     f"(config.data.channels={channels})")
  if image.dtype != np.uint8:
    raise ValueError(f"image {path} is {image.dtype}, expected uint8: scale it to 0..255 "
                     "(normalisation divides by 255)")
  return image


INDEX_MODES = ("P", "L", "1")  # PIL modes whose pixel values are class indices


def read_mask(path, modes=INDEX_MODES):
  """(the mask's PIL mode, its pixels as an array): uint8 (H, W) for the index
  modes, (H, W, 3) for 'RGB' when `modes` has it; a clear error for a missing
  or corrupt file or another mode."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"mask {path} not found")
  try:
    with Image.open(path) as img:
      img.load()
      if img.mode not in modes:
        rgb = " or an RGB colour PNG" if "RGB" in modes else ""
        raise ValueError(f"mask {path} has mode {img.mode}: expected a palette ('P') or "
                         f"single-channel ('L') PNG whose pixel values are class "
                         f"indices{rgb}")
      return img.mode, np.asarray(img).astype(np.uint8)
  except OSError as e:
    raise ValueError(f"mask {path} is not a readable PNG ({e}); re-extract it") from None


def check_label(label, path, num_classes):
  """label as uint8; ValueError naming `path` for a value outside [0, C) and not 255."""
  bad = np.setdiff1d(np.unique(label), np.r_[np.arange(num_classes), IGNORE_INDEX])
  if bad.size:
    raise ValueError(f"mask {path} has labels {bad.tolist()} outside [0, {num_classes}) "
                     f"and not {IGNORE_INDEX} (ignore)")
  return label.astype(np.uint8)



class FileSource:
  """Random access to (image uint8 (H, W, 3), label uint8 (H, W)) pairs of
  files, read lazily and checked. A dataset defines `read_label(path)`, and
  `check_key`: its label rules, part of the dataset version."""

  check_key = ""
  channels = 3  # of the images (`read_image`)

  def __init__(self, items):
    self.items = items  # [(image_path, label_path)]

  def __len__(self):
    return len(self.items)

  def read_label(self, path):
    raise NotImplementedError

  def __getitem__(self, i):
    image_path, label_path = self.items[i]
    image = read_image(image_path, self.channels)
    label = self.read_label(label_path)
    if image.shape[:2] != label.shape:
      raise ValueError(f"image {image_path} is {image.shape[0]}x{image.shape[1]} but its "
                       f"mask {label_path} is {label.shape[0]}x{label.shape[1]}")
    return image, label


def cache_dir():
  return os.environ.get("FCNJAX_DATA_CHECK_CACHE", os.path.join(
      os.path.expanduser("~"), ".cache", "fcnjax", "data_checks"))


def version_key(items, rules=""):
  """sha256 over the files' paths, sizes and mtimes, the label rules (a
  source's `check_key`) and CHECK_VERSION."""
  digest = hashlib.sha256(str(CHECK_VERSION).encode())
  if rules:
    digest.update(f"rules\0{rules}\n".encode())
  for pair in items:
    for path in pair:
      stat = os.stat(path)
      digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()


def _read(source, i):
  """None if example i reads and passes the source's checks, else the message."""
  try:
    source[i]
    return None
  except (OSError, ValueError) as e:
    return str(e)


def check_source(source, split, num_threads=4, progress=True):
  """Reads every example of a file-backed source; DataCheckError naming the
  failing files (all counted, the first MAX_LISTED listed)."""
  from tqdm import tqdm
  n = len(source)
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    results = pool.map(lambda i: _read(source, i), range(n))
    errors = [e for e in tqdm(results, total=n, desc=f"checking {split} files",
                              disable=not progress or n < PROGRESS_MIN, leave=False) if e]
  if errors:  # one error: one line; more: one line each below the count
    head = f"{len(errors)} of {n} examples of split {split!r} fail the data checks"
    if len(errors) == 1:
      raise DataCheckError(f"{head}: {errors[0]}")
    listed = "\n  ".join(errors[:MAX_LISTED])
    more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
    raise DataCheckError(f"{head} (fix them or remove them from the split list):\n  "
                         f"{listed}{more}")


def check_split(source, split, num_threads=4, progress=True, directory=None):
  """check_source unless the same files passed before (cached by version_key).
  Returns 'checked', 'cached' or 'skipped' (not file-backed)."""
  items = getattr(source, "items", None)
  if items is None:
    return "skipped"
  directory = directory or cache_dir()
  key = version_key(items, getattr(source, "check_key", ""))
  marker = os.path.join(directory, key + ".json")
  if os.path.isfile(marker):
    return "cached"
  check_source(source, split, num_threads, progress)
  try:
    os.makedirs(directory, exist_ok=True)
    with open(marker, "w") as f:
      json.dump({"split": split, "examples": len(items), "version": CHECK_VERSION}, f)
  except OSError as e:  # an unwritable cache only costs a re-check next time
    logging.warning("Data check passed but could not be cached in %s: %s", directory, e)
  return "checked"
