"""tfds splits as random-access sources of (image, label) pairs.

`data_source`: array_record datasets (shapes) through `tfds.data_source`,
read lazily, no TensorFlow. `tfds_source`: datasets that tfds prepares with
TensorFlow (pets, cityscapes), kept encoded in memory, decoded on access.
Either prepares its dataset on first use under `preparing`, an inter-process
lock, so runs started side by side do not prepare one dataset twice at once.
"""
import contextlib
import fcntl
import functools
import io
import os

import numpy as np
from PIL import Image


class TfdsSource:
  """Examples of a tfds split kept encoded in memory, decoded on access.

  label_map: a uint8 lookup table (256,) applied to the decoded mask, e.g.
  Cityscapes ids -> train ids; None keeps the values.
  """

  def __init__(self, images, labels, label_map=None):
    self.images, self.labels, self.label_map = images, labels, label_map

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    image = _decode(self.images[i], "RGB")
    label = _decode(self.labels[i], None)
    label = label[..., 0] if label.ndim == 3 else label
    return image, label if self.label_map is None else self.label_map[label]


def _decode(data, mode):
  with Image.open(io.BytesIO(data)) as img:
    return np.asarray(img.convert(mode) if mode else img)


class RecordSource:
  """(image uint8 (H, W, 3), label uint8 (H, W)) of each record of a
  `tfds.data_source` split (dicts of decoded arrays)."""

  def __init__(self, records, image_key="image", label_key="segmentation_mask"):
    self.records, self.image_key, self.label_key = records, image_key, label_key

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    record = self.records[i]
    return record[self.image_key], record[self.label_key]


def check_builder_config(builder_name):
  """ValueError naming config.data.tfds_config unless the config part of
  'name/config' is one of the registered builder's configs (before tfds is asked)."""
  import tensorflow_datasets as tfds
  name, _, config = builder_name.partition("/")
  if not config:
    return
  try:
    configs = [c.name for c in tfds.builder_cls(name).BUILDER_CONFIGS]
  except Exception:  # noqa: BLE001  not registered here: let tfds name it
    return
  if configs and config not in configs:
    raise ValueError(f"config.data.tfds_config={config!r}: the {name!r} dataset has the "
                     f"configs {configs}")


@contextlib.contextmanager
def preparing(builder_name, data_dir):
  """Holds an exclusive lock on DATA_DIR/.<builder>.lock (tfds's data dir where
  None): a second process preparing the same dataset waits, then finds it
  prepared (two at once race on the final rename of tfds's incomplete folder)."""
  import tensorflow_datasets as tfds
  root = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
  try:
    os.makedirs(root, exist_ok=True)
    lock = open(os.path.join(root, f".{builder_name.replace('/', '_')}.lock"), "a")
  except OSError:  # a read-only data dir: read as it is, nothing can be prepared there
    yield
    return
  with lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=8)
def data_source(builder_name, data_dir, split, limit):
  """A RecordSource over the first `limit` (None: all) examples of an
  array_record builder's split, prepared on first use. builder_name:
  'name' or 'name/config' (checked by `check_builder_config`)."""
  import tensorflow_datasets as tfds
  check_builder_config(builder_name)
  split = f"{split}[:{limit}]" if limit else split
  try:
    with preparing(builder_name, data_dir):
      return RecordSource(tfds.data_source(builder_name, split=split, data_dir=data_dir))
  except ValueError as e:
    if "split" not in str(e).lower():
      raise
    raise ValueError(f"{builder_name}: split {split!r} (config.data.train_split / "
                     f"eval_split): {e}") from None


def _import_tensorflow(builder_name):
  try:
    import tensorflow as tf
  except ImportError:
    raise ImportError(f"{builder_name}: tfds needs TensorFlow to prepare and read this "
                      "dataset; install it with: pip install 'fcnjax[tf]'") from None
  tf.config.set_visible_devices([], "GPU")  # keep the accelerators for JAX


@functools.lru_cache(maxsize=8)
def tfds_source(builder_name, data_dir, split, limit, image_key="image",
                label_key="segmentation_mask", label_map=None):
  """A TfdsSource over `builder_name`'s split (prepared on first use).

  Builders that need a manual download (cityscapes) raise FileNotFoundError
  with tfds's message naming the folder to fill. label_map is a tuple
  (hashable) or None.
  """
  _import_tensorflow(builder_name)
  import tensorflow_datasets as tfds
  builder = tfds.builder(builder_name, data_dir=data_dir)
  try:
    with preparing(builder_name, data_dir):
      builder.download_and_prepare()
  except AssertionError as e:  # how tfds reports a missing manual download
    raise FileNotFoundError(f"{builder_name}: {e}\n(see docs/data.md; set "
                            "--config.data.data_dir to the tfds folder)") from None
  skip = tfds.decode.SkipDecoding()
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={image_key: skip, label_key: skip})
  if limit:
    ds = ds.take(limit)
  images, labels = [], []
  for ex in tfds.as_numpy(ds):
    images.append(ex[image_key])
    labels.append(ex[label_key])
  table = None if label_map is None else np.asarray(label_map, np.uint8)
  return TfdsSource(images, labels, table)
