"""The input pipeline: batches are a function of (seed, step) only."""
import itertools

import numpy as np
import pytest

from fcnjax.data import palette as palette_lib
from fcnjax.data import pipeline


@pytest.fixture(scope="module")
def data_config(tmp_path_factory):
  config = pipeline.default_data_config()
  config.tfds_config = "tiny"
  config.data_dir = str(tmp_path_factory.mktemp("tfds"))
  config.crop_size = 24
  return config


def _take(it, n):
  return list(itertools.islice(it, n))


def test_restart_at_step_k_sees_the_same_batches(data_config):
  straight = _take(pipeline.train_batches(data_config, 8, seed=3), 12)  # crosses an epoch
  resumed = _take(pipeline.train_batches(data_config, 8, seed=3, start_step=7), 5)
  for a, b in zip(straight[7:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  other_seed = _take(pipeline.train_batches(data_config, 8, seed=4), 1)[0]
  assert not np.array_equal(other_seed["label"], straight[0]["label"])


def test_processes_take_disjoint_slices_of_the_global_batch(data_config):
  whole = _take(pipeline.train_batches(data_config, 8, seed=0), 3)
  parts = [_take(pipeline.train_batches(data_config, 8, seed=0, process_index=p,
                                        process_count=2), 3) for p in range(2)]
  for step in range(3):
    joined = np.concatenate([parts[0][step]["label"], parts[1][step]["label"]])
    np.testing.assert_array_equal(joined, whole[step]["label"])
  with pytest.raises(ValueError, match="divisible"):
    next(pipeline.train_batches(data_config, 7, seed=0, process_count=2))


def _batch_by_definition(data_config, source, batch_size, seed, step):
  """Global batch `step` written out from the documented definition."""
  n, images, labels = len(source), [], []
  for j in range(batch_size):
    epoch, k = divmod(step * batch_size + j, n)
    index = np.random.default_rng([seed, epoch]).permutation(n)[k]
    image, label = pipeline.augment(*source[index], np.random.default_rng([seed, epoch, index]),
                                    data_config.crop_size, tuple(data_config.scale_range),
                                    data_config.flip)
    images.append(image)
    labels.append(label)
  return pipeline.normalize(np.stack(images), data_config.normalization), np.stack(labels)


@pytest.fixture(params=[True, False], ids=["flags_parsed", "flags_unparsed"])
def absl_flags(request):
  """absl's flags parsed (as under an entry point) or not (a library call); restored after."""
  from absl import flags
  was = flags.FLAGS.is_parsed()
  flags.FLAGS.unparse_flags()
  if request.param:
    flags.FLAGS.mark_as_parsed()
  yield request.param
  flags.FLAGS.unparse_flags()
  if was:
    flags.FLAGS.mark_as_parsed()


@pytest.mark.parametrize("threads, workers", [(0, 0), (3, 0), (1, 2)])
def test_grain_threads_and_workers_keep_the_batch_definition(data_config, threads, workers,
                                                             absl_flags, monkeypatch):
  """Worker processes where absl's flags are parsed; threads, with a warning, where not."""
  from absl import logging
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
  source = pipeline.get_source(data_config, "train")
  batches = _take(pipeline.train_batches(data_config, 8, seed=5, start_step=6,
                                         num_threads=threads, num_workers=workers), 4)
  for step, batch in enumerate(batches, start=6):  # steps 6..9 cross into epoch 1
    image, label = _batch_by_definition(data_config, source, 8, 5, step)
    np.testing.assert_array_equal(batch["image"], image)
    np.testing.assert_array_equal(batch["label"], label)
  fell_back = bool(workers) and not absl_flags
  assert [w for w in warnings if "num_workers" in w] == (
      ["config.data.num_workers=2: grain's worker processes need absl's flags parsed, and "
       "this process has not parsed them (a library call, not an entry point); making "
       "batches with num_threads=1 instead"] if fell_back else [])


def test_every_example_once_per_epoch(data_config):
  # 64 tiny train examples, batch 8: 8 steps are one epoch, a permutation.
  info = pipeline.get_info(data_config)
  source = pipeline.get_source(data_config, "train")
  data_config = data_config.copy_and_resolve_references()
  data_config.flip, data_config.scale_range = False, (1.0, 1.0)
  data_config.crop_size = source[0][1].shape[0]  # full image: no crop randomness
  batches = _take(pipeline.train_batches(data_config, 8, seed=1), info.num_train // 8)
  seen = np.concatenate([b["label"] for b in batches])
  expected = np.stack([source[i][1] for i in range(len(source))])
  key = lambda arr: sorted(a.tobytes() for a in arr)
  assert key(seen.astype(np.uint8)) == key(expected)


def test_eval_batches_pad_with_ignore_and_cover_every_example(data_config):
  info = pipeline.get_info(data_config)
  batches = list(pipeline.eval_batches(data_config, 6))  # 16 examples: 6 + 6 + 4 + pad
  assert len(batches) == 3 and all(b["label"].shape[0] == 6 for b in batches)
  assert (batches[-1]["label"][4:] == 255).all()
  valid = sum(int((b["label"] != 255).sum()) for b in batches)
  source = pipeline.get_source(data_config, "eval")
  assert valid == sum(int((source[i][1] != 255).sum()) for i in range(info.num_eval))
  # Two processes: same number of batches each, together every example once.
  parts = [list(pipeline.eval_batches(data_config, 3, process_index=p, process_count=2))
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == 3
  merged = [np.concatenate([parts[0][i]["label"], parts[1][i]["label"]]) for i in range(3)]
  for a, b in zip(merged, batches):
    np.testing.assert_array_equal(a, b["label"])


def test_eval_size_pads_to_a_fixed_shape_and_rejects_larger_examples(data_config):
  config = data_config.copy_and_resolve_references()
  config.eval_size = 40  # tiny shapes are 32x32
  batch = next(pipeline.eval_batches(config, 4))
  assert batch["image"].shape == (4, 40, 40, 3) and batch["label"].shape == (4, 40, 40)
  assert (batch["label"][:, 32:] == 255).all() and (batch["label"][:, :, 32:] == 255).all()
  assert (batch["label"][:, :32, :32] != 255).all()
  config.eval_size = 16
  with pytest.raises(ValueError, match="eval_size"):
    next(pipeline.eval_batches(config, 4))


def test_eval_bucket_rounds_native_sizes_up_to_few_shapes(monkeypatch):
  import types
  rng = np.random.default_rng(0)
  sizes = [(20, 33), (40, 17), (64, 64), (31, 30)]
  examples = [(rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
               rng.integers(0, 3, (h, w), dtype=np.uint8)) for h, w in sizes]
  toy = types.SimpleNamespace(CLASS_NAMES=("a", "b", "c"),
                              source=lambda config, split, limit=None: examples)
  monkeypatch.setitem(pipeline.DATASETS, "toy_sizes", toy)
  config = pipeline.default_data_config()
  config.name, config.eval_bucket = "toy_sizes", 32
  batches = list(pipeline.eval_batches(config, 1))
  assert [b["label"].shape[1:] for b in batches] == [(32, 64), (64, 32), (64, 64), (32, 32)]
  for batch, (image, label) in zip(batches, examples):
    h, w = label.shape
    np.testing.assert_array_equal(batch["label"][0, :h, :w], label)
    assert (batch["label"][0, h:] == 255).all() and (batch["label"][0, :, w:] == 255).all()
    np.testing.assert_allclose(batch["image"][0, :h, :w],
                               pipeline.normalize(image, config.normalization))


def test_augment_keeps_image_and_label_aligned_and_pads_with_ignore():
  rng = np.random.default_rng(0)
  label = np.zeros((10, 12), np.uint8)
  label[2:5, 3:9] = 1
  image = np.repeat((label * 200)[..., None], 3, axis=-1).astype(np.uint8)
  for seed in range(10):
    img, lab = pipeline.augment(image, label, np.random.default_rng(seed), 16,
                                (0.8, 1.3), flip=True)
    assert img.shape == (16, 16, 3) and lab.shape == (16, 16)
    inside = lab != 255
    # Nearest-resized labels and bilinear-resized images agree away from edges.
    assert ((img[..., 0] > 150) <= (lab == 1) | ~inside).mean() > 0.9
    assert (lab[~inside] == 255).all()


def test_augment_without_scaling_is_a_window_of_the_input():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
  label = rng.integers(0, 21, (10, 12), dtype=np.uint8)
  for seed in range(20):
    img, lab = pipeline.augment(image, label, np.random.default_rng(seed), 6, flip=True)
    windows = [(image[y:y + 6, x:x + 6], label[y:y + 6, x:x + 6])
               for y in range(5) for x in range(7)]
    windows += [(i[:, ::-1], l[:, ::-1]) for i, l in windows]
    assert any(np.array_equal(img, i) and np.array_equal(lab, l) for i, l in windows)


def test_normalize_round_trip_and_errors():
  image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
  for mode in ("imagenet", "caffe"):
    np.testing.assert_array_equal(pipeline.denormalize(pipeline.normalize(image, mode), mode),
                                  image)
  imagenet = pipeline.normalize(image, "imagenet")
  np.testing.assert_allclose(imagenet[..., 1], (image[..., 1] / 255 - 0.456) / 0.224, rtol=1e-5)
  caffe = pipeline.normalize(image, "caffe")
  np.testing.assert_allclose(caffe[..., 0], image[..., 2] - 104.00698793, rtol=1e-5)
  with pytest.raises(ValueError, match="normalization"):
    pipeline.normalize(image, "zca")
  config = pipeline.default_data_config()
  config.name = "coco"
  with pytest.raises(ValueError, match="config.data.name"):
    pipeline.get_info(config)


def test_palette_is_the_voc_palette():
  # Colours of classes 0..20 and 255 as listed by the PASCAL VOC devkit.
  voc = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
         (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0),
         (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128), (192, 128, 128),
         (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128)]
  colors = palette_lib.palette(256)
  assert colors.dtype == np.uint8 and colors.shape == (256, 3)
  np.testing.assert_array_equal(colors[:21], voc)
  assert tuple(colors[255]) == palette_lib.IGNORE_COLOR == (224, 224, 192)
  mask = np.array([[0, 1, 255], [20, 3, 4]])
  from fcnjax import viz
  rgb = viz.colorize(mask, palette_lib.palette(21))
  for (y, x), c in np.ndenumerate(mask):
    np.testing.assert_array_equal(rgb[y, x], voc[c] if c != 255 else (224, 224, 192))


def test_datasets_that_need_tensorflow_name_the_extra(monkeypatch):
  import sys
  from fcnjax.data import tfds_source
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
  tfds_source.tfds_source.cache_clear()
  config = pipeline.default_data_config()
  config.name = "pets"
  with pytest.raises(ImportError, match=r"oxford_iiit_pet: .*pip install 'fcnjax\[tf\]'"):
    pipeline.get_source(config, "train")


def test_each_dataset_owns_its_fields():
  """config.data = the common fields + each dataset's FIELDS; another dataset's
  field set away from its default is refused, naming the field and its owner."""
  from fcnjax.data import folder, pets, shapes, voc
  config = pipeline.default_data_config()
  owned = {"shapes": shapes.FIELDS, "voc": voc.FIELDS, "pets": pets.FIELDS,
           "folder": folder.FIELDS}
  expected = set(pipeline.common_data_fields()).union(*owned.values())
  assert set(config.keys()) == expected
  assert {"tfds_config", "manual_dir", "sbd_dir", "pets_boundary_ignore"} <= expected
  assert not {"tfds_config", "manual_dir", "sbd_dir", "pets_boundary_ignore"} & set(
      pipeline.common_data_fields())
  config.sbd_dir = "/data/sbd"
  assert pipeline.default_data_config().sbd_dir is None  # no placeholder is shared
  with pytest.raises(ValueError, match=r"config\.data\.sbd_dir='/data/sbd' is read only by "
                                       r"the 'voc' dataset, but config\.data\.name='shapes'"):
    pipeline.get_info(config)
  config.name = "voc"
  config.pets_boundary_ignore = False
  with pytest.raises(ValueError, match=r"pets_boundary_ignore=False .* 'pets' dataset"):
    pipeline.get_info(config)
