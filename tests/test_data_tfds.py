"""Pets and Cityscapes adapters on tfds mock data (no download)."""
import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="pets / cityscapes need the [tf] extra")
import tensorflow_datasets as tfds  # noqa: E402

from fcnjax.data import cityscapes, pets, pipeline, tfds_source  # noqa: E402


def _config(name):
  config = pipeline.default_data_config()
  config.name, config.crop_size = name, 64
  return config


def _pets_examples(num=4, seed=0):
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(num):
    h, w = rng.integers(40, 90, 2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    trimap = rng.integers(1, 4, (h, w, 1), dtype=np.uint8)  # 1 pet, 2 bg, 3 border
    examples.append((image, trimap))
  return examples


def _pets_mock(examples):
  """tfds mock whose examples are ours (encoded PNGs, as SkipDecoding gives)."""
  import tensorflow as tf

  def as_dataset_fn(self, split, decoders=None, **kwargs):
    del self, split, decoders, kwargs
    return tf.data.Dataset.from_tensor_slices({
        "image": [tf.io.encode_png(i).numpy() for i, _ in examples],
        "segmentation_mask": [tf.io.encode_png(t).numpy() for _, t in examples]})

  return tfds.testing.mock_data(num_examples=len(examples), as_dataset_fn=as_dataset_fn)


def test_pets_trimap_to_three_classes():
  examples = _pets_examples()
  tfds_source.tfds_source.cache_clear()
  with _pets_mock(examples):
    src = pets.source(_config("pets"), "train")
    assert len(src) == len(examples)
    for (image, trimap), i in zip(examples, range(len(src))):
      got_image, label = src[i]
      np.testing.assert_array_equal(got_image, image)
      np.testing.assert_array_equal(label, np.select([trimap[..., 0] == 1,
                                                      trimap[..., 0] == 2], [1, 0], 255))
  table = np.asarray(pets.label_map(boundary_ignore=False))
  assert table[3] == 2 and table[1] == 1 and table[2] == 0


def test_pets_batches_and_info():
  tfds_source.tfds_source.cache_clear()
  with _pets_mock(_pets_examples(seed=1)):
    config = _config("pets")
    info = pipeline.get_info(config)
    batch = next(pipeline.train_batches(config, 2, seed=0))
  assert info.num_classes == 3 and info.class_names[1] == "pet"
  assert batch["image"].shape == (2, 64, 64, 3)
  assert set(np.unique(batch["label"])) <= {0, 1, 255}
  tfds_source.tfds_source.cache_clear()


def test_cityscapes_ids_to_train_ids():
  table = np.asarray(cityscapes.label_map())
  assert table[7] == 0 and table[26] == 13 and table[33] == 18
  assert table[0] == table[6] == table[9] == table[34] == 255
  assert len(set(cityscapes.ID_TO_TRAIN_ID.values())) == len(cityscapes.CLASS_NAMES) == 19
  tfds_source.tfds_source.cache_clear()
  with tfds.testing.mock_data(num_examples=1):
    src = cityscapes.source(_config("cityscapes"), "validation")
    image, label = src[0]
    raw = tfds_source.tfds_source("cityscapes/semantic_segmentation", None, "validation", None,
                               image_key="image_left", label_key="segmentation_label")[0][1]
  assert image.shape == (1024, 2048, 3) and label.shape == (1024, 2048)
  np.testing.assert_array_equal(label, table[raw])
  assert set(np.unique(label)) <= set(range(19)) | {255}


def test_cityscapes_without_manual_files_names_the_folder(tmp_path):
  config = _config("cityscapes")
  config.data_dir = str(tmp_path)
  tfds_source.tfds_source.cache_clear()
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "downloads" / "manual")):
    cityscapes.source(config, "train")


def test_unknown_dataset_name():
  with pytest.raises(ValueError, match="config.data.name"):
    pipeline.get_source(_config("ade20k"), "train")
