"""Input pipeline: sources, augmentation, deterministic resumable batches.

A *source* is a random-access list of (image uint8 (H, W, 3), label uint8
(H, W)) pairs (C channels instead of 3 for a folder of config.data.channels=C): a tfds split loaded into memory, or a VOC-format folder read
lazily. Training batches are pure numpy functions of (seed, step): epoch e
visits the examples in the permutation drawn from (seed, e), example i of
epoch e is augmented with a generator seeded by (seed, e, i). So
`train_batches(..., start_step=k)` yields exactly what an uninterrupted run
sees from step k on, whatever the number of processes or devices. grain
makes the batches ahead of the training step, in threads or processes.
"""
import copy
import dataclasses
import functools
import importlib
import os
from typing import Sequence

from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_dict
import numpy as np
from PIL import Image

from fcnjax.data import check
from fcnjax.data import palette as palette_lib

IGNORE_INDEX = palette_lib.IGNORE_INDEX
# name -> a module (or its import path) with CLASS_NAMES and optional PALETTE ((C, 3)
# uint8; default: the VOC colours), or instead classes(data_config) -> (names,
# palette or None) where the classes come from the data (folder); optional FIELDS
# ({field: default}: the config.data fields only it reads) and source(data_config,
# split, limit) -> a random-access list of (image uint8 (H, W, 3), label uint8
# (H, W)) pairs. A new dataset is one module plus one line here (or
# DATASETS[name] = module, before the config is built).
DATASETS = {"shapes": "fcnjax.data.shapes", "voc": "fcnjax.data.voc",
            "pets": "fcnjax.data.pets", "cityscapes": "fcnjax.data.cityscapes",
            "folder": "fcnjax.data.folder"}
NORMALIZATIONS = ("imagenet", "caffe")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)


def common_data_fields():
  """The fields every loader or the augmentation reads (default: embedded shapes).
  Training crops are crop_size x crop_width (None: square)."""
  unset = config_dict.placeholder  # a typed None, settable from the command line
  return dict(name="shapes", data_dir=unset(str), train_split="train",
              eval_split="validation", crop_size=128, crop_width=unset(int),
              scale_range=(0.75, 1.25), flip=True,
              normalization="imagenet", num_train=unset(int), num_eval=unset(int),
              eval_size=unset(int), eval_bucket=unset(int), num_threads=4,
              num_workers=unset(int), prefetch=4)


def dataset_fields():
  """{dataset name: its own FIELDS} of every registered dataset (read-only)."""
  return {name: getattr(dataset(name), "FIELDS", {}) for name in DATASETS}


def default_data_config():
  """The common fields plus each registered dataset's own FIELDS (copied: a
  placeholder is a reference that configs would otherwise share)."""
  fields = common_data_fields()
  for own in dataset_fields().values():
    fields.update(copy.deepcopy(own))
  return ml_collections.ConfigDict(fields)


def _unchanged(value, default):
  value = tuple(value) if isinstance(value, list) else value
  return value == (default.get() if isinstance(default, config_dict.FieldReference) else default)


@dataclasses.dataclass(frozen=True)
class DataInfo:
  num_classes: int
  class_names: Sequence[str]
  palette: np.ndarray  # (C, 3) uint8
  num_train: int
  num_eval: int


def _check(data_config):
  if data_config.name not in DATASETS:
    raise ValueError(f"config.data.name={data_config.name!r}; valid: {tuple(DATASETS)}")
  for owner, own in dataset_fields().items():  # another dataset's field: set for nothing
    for field, default in own.items():
      if owner != data_config.name and not _unchanged(data_config.get(field), default):
        raise ValueError(f"config.data.{field}={data_config.get(field)!r} is read only by "
                         f"the {owner!r} dataset, but config.data.name={data_config.name!r}")
  width = data_config.get("crop_width")
  if width is not None and (not isinstance(width, int) or width < 1):
    raise ValueError(f"config.data.crop_width={width!r}: must be int >= 1 (None: "
                     "crop_size, square crops)")
  if data_config.normalization not in NORMALIZATIONS:
    raise ValueError(f"config.data.normalization={data_config.normalization!r}; "
                     f"valid: {NORMALIZATIONS}")
  channels = data_config.get("channels", 3)
  if not isinstance(channels, int) or channels < 1:
    raise ValueError(f"config.data.channels={channels!r}: must be an int >= 1")
  if channels != 3 and data_config.normalization == "caffe":
    raise ValueError(f"config.data.normalization='caffe' is BGR (3 channels) but "
                     f"config.data.channels={channels}: use 'imagenet'")


def channel_stats(channels):
  """ImageNet's (mean, std) for `channels` input channels: RGB's for 3, their
  averages for 1 (grayscale), RGB's repeated cyclically for more (the order in
  which `assemble.adapt_input_conv` repeats a pretrained first conv's)."""
  if channels == 3:
    return IMAGENET_MEAN, IMAGENET_STD
  if channels == 1:
    return IMAGENET_MEAN.mean(keepdims=True), IMAGENET_STD.mean(keepdims=True)
  take = np.arange(channels) % 3
  return IMAGENET_MEAN[take], IMAGENET_STD[take]


def normalize(image, mode):
  """uint8 (..., H, W, C) -> float32 network input; C = 3 (RGB) unless the
  dataset has other channels (config.data.channels).

  'imagenet': (x/255 - mean) / std (`channel_stats`). 'caffe': BGR, x - mean,
  0..255 scale (RGB only).
  """
  x = np.asarray(image, np.float32)
  if mode == "imagenet":  # (x / 255 - mean) / std as one in-place multiply-add
    mean, std = channel_stats(x.shape[-1])
    x = x.copy() if x is image else x
    x *= 1.0 / (255.0 * std)
    x -= mean / std
    return x
  if mode == "caffe":
    return x[..., ::-1] - CAFFE_MEAN_BGR
  raise ValueError(f"normalization={mode!r}; valid: {NORMALIZATIONS}")


def denormalize(x, mode):
  """Inverse of `normalize`, back to uint8 (..., C)."""
  x = np.asarray(x, np.float32)
  if mode == "imagenet":
    mean, std = channel_stats(x.shape[-1])
    x = (x * std + mean) * 255.0
  elif mode == "caffe":
    x = (x + CAFFE_MEAN_BGR)[..., ::-1]
  else:
    raise ValueError(f"normalization={mode!r}; valid: {NORMALIZATIONS}")
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def dataset(name):
  """The module registered for `name` in DATASETS (imported on first use)."""
  if name not in DATASETS:
    raise ValueError(f"config.data.name={name!r}; valid: {tuple(DATASETS)}")
  entry = DATASETS[name]
  return importlib.import_module(entry) if isinstance(entry, str) else entry


def get_source(data_config, split):
  """The examples of `split` ('train' / 'eval' name from the config)."""
  _check(data_config)
  split_name = data_config.train_split if split == "train" else data_config.eval_split
  limit = data_config.num_train if split == "train" else data_config.num_eval
  return dataset(data_config.name).source(data_config, split_name, limit)


def get_info(data_config):
  """Classes, palette and split sizes of the configured dataset."""
  _check(data_config)
  module = dataset(data_config.name)
  if hasattr(module, "classes"):
    names, colors = module.classes(data_config)
  else:
    names, colors = module.CLASS_NAMES, getattr(module, "PALETTE", None)
  names = tuple(names)
  return DataInfo(num_classes=len(names), class_names=names,
                  palette=palette_lib.palette(len(names)) if colors is None
                  else np.asarray(colors, np.uint8),
                  num_train=len(get_source(data_config, "train")),
                  num_eval=len(get_source(data_config, "eval")))


def _pad(image, label, h, w):
  """Pads bottom/right to (h, w): image with 0, label with IGNORE_INDEX, so
  padding never counts in the loss or the metrics."""
  ph, pw = max(h - image.shape[0], 0), max(w - image.shape[1], 0)
  if ph or pw:
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
  return image, label


def _resize(image, size, resample):
  """uint8 (H, W, C) resized to size (width, height): RGB as one PIL image,
  other channel counts one channel at a time (PIL resamples each alike)."""
  if image.shape[-1] == 3:
    return np.asarray(Image.fromarray(image).resize(size, resample))
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]))
                              .resize(size, resample)) for c in range(image.shape[-1])], -1)


def augment(image, label, rng, crop_size, scale_range=(1.0, 1.0), flip=True):
  """Random scale (bilinear image / nearest label), pad with ignore, random
  crop (crop_size: S for S x S, or (height, width)), random horizontal flip.
  uint8 in, uint8 out."""
  ch, cw = (crop_size, crop_size) if np.isscalar(crop_size) else crop_size
  scale = rng.uniform(*scale_range)
  if scale != 1.0:
    h, w = label.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = _resize(image, size, Image.BILINEAR)
    label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
  image, label = _pad(image, label, ch, cw)
  y = rng.integers(0, label.shape[0] - ch + 1)
  x = rng.integers(0, label.shape[1] - cw + 1)
  image = image[y:y + ch, x:x + cw]
  label = label[y:y + ch, x:x + cw]
  if flip and rng.random() < 0.5:
    image, label = image[:, ::-1], label[:, ::-1]
  return image, label


@functools.lru_cache(maxsize=4)
def _permutation(seed, epoch, n):
  return np.random.default_rng([seed, epoch]).permutation(n)


def _train_batch(source, data_config, batch_size, seed, process_index, local, step):
  """This process's slice of global batch `step`: examples at stream positions
  step * batch_size + j, epoch e in the permutation drawn from (seed, e)."""
  n = len(source)
  crop = (data_config.crop_size, data_config.get("crop_width") or data_config.crop_size)
  images, labels = [], []
  for j in range(process_index * local, (process_index + 1) * local):
    epoch, k = divmod(step * batch_size + j, n)
    index = _permutation(seed, epoch, n)[k]
    rng = np.random.default_rng([seed, epoch, index])
    image, label = augment(*source[index], rng, crop, tuple(data_config.scale_range),
                           data_config.flip)
    images.append(image)
    labels.append(label)
  return {"image": normalize(np.stack(images), data_config.normalization),
          "label": np.stack(labels).astype(np.int32)}


def train_dataset(data_config, batch_size, *, seed, start_step=0, process_index=0,
                  process_count=1):
  """A grain MapDataset whose element k is this process's slice of the global
  batch of step start_step + k (random access: any element, any order)."""
  import grain
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} not divisible by {process_count} processes")
  source = get_source(data_config, "train")
  if len(source) == 0:
    raise ValueError(f"config.data: the {data_config.train_split!r} split is empty")
  make = functools.partial(_train_batch, source, data_config, batch_size, seed,
                           process_index, batch_size // process_count)
  return grain.MapDataset.range(start_step, 2 ** 62).map(make)


def default_num_workers():
  """Input worker processes when config.data.num_workers is None: none where
  JAX computes on this CPU (workers would take its cores), else up to 8."""
  import jax
  if jax.default_backend() == "cpu":
    return 0
  return min(8, (os.cpu_count() or 1) // 2)


def train_batches(data_config, batch_size, *, seed, start_step=0, process_index=0,
                  process_count=1, num_threads=None, num_workers=None, prefetch=None):
  """Infinite iterator of this process's slice of each global batch.

  Yields {'image': float32 (B, S, W, 3) (C: config.data.channels), 'label': int32 (B, S, W)} with
  B = batch_size // process_count, S = data_config.crop_size and W =
  data_config.crop_width (None: S); the global
  batch of step t depends only on (seed, t). Batches are made ahead by grain:
  `num_threads` threads (default data_config.num_threads), `num_workers`
  processes if > 0 (None: `default_num_workers()`; grain's workers read absl
  flags, so where they are not parsed, a warning and threads only),
  `prefetch` batches buffered.
  """
  import grain
  defaults = default_data_config()  # configs saved before these fields existed
  pick = lambda value, name: data_config.get(name, defaults[name]) if value is None else value
  dataset = train_dataset(data_config, batch_size, seed=seed, start_step=start_step,
                          process_index=process_index, process_count=process_count)
  threads = pick(num_threads, "num_threads")
  buffered = max(pick(prefetch, "prefetch"), threads)  # each thread fills a slot
  options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=buffered if threads else 0)
  batches = dataset.to_iter_dataset(options)
  workers = pick(num_workers, "num_workers")
  workers = default_num_workers() if workers is None else workers
  if workers and not flags.FLAGS.is_parsed():  # grain's workers read its absl flags
    logging.warning("config.data.num_workers=%d: grain's worker processes need absl's "
                    "flags parsed, and this process has not parsed them (a library call, "
                    "not an entry point); making batches with num_threads=%d instead",
                    workers, threads)
    workers = 0
  if workers:
    batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(batches)


def eval_batches(data_config, batch_size, *, process_index=0, process_count=1):
  """Finite iterator over the eval split, in order, this process's slice.

  batch_size is per process. Every process yields the same number of
  batches; the examples of a batch are padded (bottom/right, label 255) to
  data_config.eval_size or to the largest of the global batch, and missing
  examples at the end are all-255 padding, so all batches have the same
  leading size. batch_size=1 without eval_size gives native sizes.
  data_config.eval_bucket=k rounds the padded size up to a multiple of k, so
  a dataset of many image sizes compiles the eval step for a few shapes only
  (the padding is ignored by the metrics, but the network sees it near the
  bottom/right border).
  """
  source = get_source(data_config, "eval")
  n = len(source)
  global_batch = batch_size * process_count
  for start in range(0, n, global_batch):
    ids = range(start, min(start + global_batch, n))
    if data_config.eval_size:
      h = w = data_config.eval_size
      examples = [source[i] for i in ids if _is_local(i - start, batch_size, process_index)]
    else:  # the largest example of the global batch, so all processes agree
      examples = [source[i] for i in ids]
      h = max(label.shape[0] for _, label in examples)
      w = max(label.shape[1] for _, label in examples)
      examples = [e for k, e in enumerate(examples) if _is_local(k, batch_size, process_index)]
    bucket = data_config.get("eval_bucket")
    if bucket:
      h, w = -(-h // bucket) * bucket, -(-w // bucket) * bucket
    images, labels = [], []
    for image, label in examples:
      if label.shape[0] > h or label.shape[1] > w:
        raise ValueError(f"eval example of size {label.shape[0]}x{label.shape[1]} is larger "
                         f"than config.data.eval_size={data_config.eval_size}: raise it, or "
                         "set it to None to pad each batch to its largest example")
      image, label = _pad(image, label, h, w)
      images.append(image)
      labels.append(label)
    while len(images) < batch_size:
      images.append(np.zeros((h, w, data_config.get("channels", 3)), np.uint8))
      labels.append(np.full((h, w), IGNORE_INDEX, np.uint8))
    yield {"image": normalize(np.stack(images), data_config.normalization),
           "label": np.stack(labels).astype(np.int32)}


def _is_local(k, batch_size, process_index):
  """Whether position k of a global batch belongs to this process's slice."""
  return k // batch_size == process_index


def check_splits(data_config, progress=True, directory=None):
  """`check.check_split` on the train and eval splits of the configured
  dataset: {'train': status, 'eval': status}. Raises check.DataCheckError on
  a bad file."""
  statuses = {}
  for split in ("train", "eval"):
    name = data_config.train_split if split == "train" else data_config.eval_split
    source = get_source(data_config, split)
    statuses[split] = check.check_split(source, name, data_config.get("num_threads", 4) or 1,
                                        progress, directory)
    if statuses[split] != "skipped":
      logging.info("Data files of split %r: %s (%d examples)", name, statuses[split],
                   len(source))
  return statuses
