"""Every data file read and checked once, before the first training step.

A file-backed source (one with `items`: [(image path, label path)], e.g.
`voc.VOCSource`) is read in full: each example through the source itself, so
the checks are the ones training would hit later (readable files, RGB images,
palette masks, labels in [0, C) or 255, image and mask sizes equal). Sources
that are generated or already decoded in memory (shapes, tfds) are skipped.

A passed check is remembered in a small JSON file named by a hash of the file
list with each file's size and mtime (the dataset version): the next run with
the same files does not read them again. The cache folder is
$FCNJAX_DATA_CHECK_CACHE, default ~/.cache/fcnjax/data_checks.
"""
import concurrent.futures
import hashlib
import json
import os

from absl import logging

CHECK_VERSION = 1  # bump when the checks change, so old passes are not trusted
MAX_LISTED = 10  # bad files named in the error; the count covers all of them
PROGRESS_MIN = 200  # examples from which a progress bar is shown


class DataCheckError(ValueError):
  """Files of a split that fail the checks; the message names them."""


def cache_dir():
  return os.environ.get("FCNJAX_DATA_CHECK_CACHE", os.path.join(
      os.path.expanduser("~"), ".cache", "fcnjax", "data_checks"))


def version_key(items):
  """sha256 over the files' paths, sizes and mtimes (and CHECK_VERSION)."""
  digest = hashlib.sha256(str(CHECK_VERSION).encode())
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
  marker = os.path.join(directory, version_key(items) + ".json")
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


def check_splits(data_config, progress=True, directory=None):
  """check_split on the train and eval splits of the configured dataset:
  {'train': status, 'eval': status}. Raises DataCheckError on a bad file."""
  from fcnjax.data import pipeline
  statuses = {}
  for split in ("train", "eval"):
    name = data_config.train_split if split == "train" else data_config.eval_split
    source = pipeline.get_source(data_config, split)
    statuses[split] = check_split(source, name, data_config.get("num_threads", 4) or 1,
                                  progress, directory)
    if statuses[split] != "skipped":
      logging.info("Data files of split %r: %s (%d examples)", name, statuses[split],
                   len(source))
  return statuses
