"""The procedural shapes dataset: deterministic, all classes, thin structures."""
import numpy as np

from fcnjax.data import shapes


def test_examples_depend_on_seed_and_index_only():
  a_img, a_mask = shapes.render_example(0, 5, 64)
  np.random.seed(123)  # global state and call order must not matter
  for i in range(3):
    shapes.render_example(0, i, 64)
  b_img, b_mask = shapes.render_example(0, 5, 64)
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_mask, b_mask)
  assert not np.array_equal(a_img, shapes.render_example(1, 5, 64)[0])  # other seed
  assert not np.array_equal(a_img, shapes.render_example(0, 6, 64)[0])  # other index


def test_classes_sizes_and_thin_parts():
  counts = np.zeros(len(shapes.CLASS_NAMES), int)
  thin_pixels = 0
  for i in range(60):
    image, mask = shapes.render_example(0, i, 128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (128, 128) and mask.max() < len(shapes.CLASS_NAMES)
    counts += np.bincount(mask.ravel(), minlength=len(shapes.CLASS_NAMES))
    # Thin structures: object pixels with background on both sides within 3 px.
    fg = mask > 0
    left, right = np.roll(fg, 3, axis=1), np.roll(fg, -3, axis=1)
    thin_pixels += int((fg & ~left & ~right).sum())
  assert (counts > 0).all(), counts  # every class appears
  assert 0.05 < counts[1:].sum() / counts.sum() < 0.5  # objects are a minority, not rare
  assert thin_pixels > 500


def _coarse(mask, stride):
  """The label at each stride x stride block centre, copied over the block."""
  centres = mask[stride // 2::stride, stride // 2::stride]
  return np.repeat(np.repeat(centres, stride, axis=0), stride, axis=1)


def test_coarse_labels_lose_object_pixels():
  # The point of the dataset: a stride-32 label map misses much of the thin
  # and small objects, a stride-8 one recovers clearly more of them.
  recovered = {32: 0, 8: 0}
  objects = 0
  for i in range(40):
    _, mask = shapes.render_example(0, i, 128)
    objects += int((mask > 0).sum())
    for stride in recovered:
      recovered[stride] += int(((_coarse(mask, stride) == mask) & (mask > 0)).sum())
  acc32, acc8 = recovered[32] / objects, recovered[8] / objects
  assert acc32 < 0.6 and acc8 > acc32 + 0.2, (acc32, acc8)


def test_builder_writes_both_splits_without_tensorflow(tmp_path):
  import subprocess
  import sys
  # A fresh interpreter prepares and reads the split without importing TensorFlow.
  code = ("import sys, numpy as np, tensorflow_datasets as tfds, fcnjax.data.shapes\n"
          f"d = tfds.data_source('shapes/tiny', data_dir={str(tmp_path)!r})\n"
          "np.savez(sys.argv[1], n=len(d['train']), masks=np.stack([e['segmentation_mask'] "
          "for e in d['validation']]), images=np.stack([e['image'] for e in d['validation']]))\n"
          "assert 'tensorflow' not in sys.modules")
  out = tmp_path / "split.npz"
  subprocess.run([sys.executable, "-c", code, str(out)], check=True, capture_output=True)
  split = np.load(out)
  assert int(split["n"]) == 64 and split["masks"].shape == (16, 32, 32)
  seed = shapes.SPLIT_SEEDS["validation"]
  rendered = [shapes.render_example(seed, i, 32) for i in range(16)]
  # tfds orders a split by key hash: the split holds each rendered example exactly once.
  key = lambda image, mask: image.tobytes() + mask.tobytes()
  assert (sorted(key(*e) for e in zip(split["images"], split["masks"]))
          == sorted(key(*e) for e in rendered))


def test_preview_cli_writes_images_over_coloured_masks(tmp_path):
  import subprocess
  import sys
  from PIL import Image
  from fcnjax.data import palette, pipeline
  out = tmp_path / "grid.png"
  subprocess.run([sys.executable, "-m", "fcnjax.commands.preview", "--dataset=shapes",
                  "--tfds_config=tiny", f"--data_dir={tmp_path}", "--num=3", "--size=32",
                  f"--out={out}"], check=True, capture_output=True)
  grid = np.asarray(Image.open(out))
  assert grid.shape == (64, 96, 3)
  config = pipeline.default_data_config()
  config.tfds_config, config.data_dir = "tiny", str(tmp_path)
  source = pipeline.get_source(config, "train")
  colors = palette.palette(len(shapes.CLASS_NAMES))
  for i in range(3):  # tiles are at native size: exact image and mask colours
    image, label = source[i]
    np.testing.assert_array_equal(grid[:32, 32 * i:32 * (i + 1)], image)
    np.testing.assert_array_equal(grid[32:, 32 * i:32 * (i + 1)], colors[label])


def test_a_dataset_is_prepared_under_an_interprocess_lock(tmp_path, monkeypatch):
  import fcntl
  import pytest
  import tensorflow_datasets as tfds
  from fcnjax.data import tfds_source

  def try_lock():  # as a second process would: its own open file, non-blocking
    with open(tmp_path / ".shapes_tiny.lock", "a") as other:
      fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
      fcntl.flock(other, fcntl.LOCK_UN)

  def prepare(name, split, data_dir):
    with pytest.raises(BlockingIOError):
      try_lock()
    return [{"image": np.zeros((2, 2, 3), np.uint8), "segmentation_mask": np.ones((2, 2))}]

  monkeypatch.setattr(tfds, "data_source", prepare)
  source = tfds_source.data_source("shapes/tiny", str(tmp_path), "train", None)
  assert len(source) == 1 and source[0][1].sum() == 4
  try_lock()  # released once prepared


def test_a_read_only_data_dir_is_read_without_a_lock(tmp_path, monkeypatch):
  import os
  import tensorflow_datasets as tfds
  from fcnjax.data import tfds_source
  read_only = tmp_path / "prepared"
  read_only.mkdir()
  os.chmod(read_only, 0o555)
  if os.access(read_only, os.W_OK):  # root ignores the mode: make the open fail instead
    monkeypatch.setattr(tfds_source, "open", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")), raising=False)
  monkeypatch.setattr(tfds, "data_source", lambda name, split, data_dir: [
      {"image": np.zeros((2, 2, 3), np.uint8), "segmentation_mask": np.zeros((2, 2))}])
  assert len(tfds_source.data_source("shapes/tiny", str(read_only), "train", None)) == 1
  assert not os.path.exists(read_only / ".shapes_tiny.lock")
