"""VOC + SBD loader on generated fixture folders, including bad inputs."""
import os

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fcnjax.data import pipeline, voc

RNG = np.random.default_rng(0)
VOC_TRAIN, VOC_VAL = ["2007_000001", "2007_000002"], ["2007_000003", "2007_000004", "2008_000005"]
SBD_TRAIN, SBD_VAL = ["2007_000003", "2009_000006", "2009_000007"], ["2009_000008"]


def _palette_png(path, label):
  img = Image.fromarray(label.astype(np.uint8), mode="P")
  img.putpalette(pipeline.palette_lib.palette(256).reshape(-1).tolist())
  img.save(path)


def _label(h, w):
  label = RNG.integers(0, 21, (h, w)).astype(np.uint8)
  label[0] = 255  # an ignore border, as VOC draws around objects
  return label


def make_voc(root):
  for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  for i in VOC_TRAIN + VOC_VAL:
    h, w = RNG.integers(20, 40, 2)
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        os.path.join(root, "JPEGImages", f"{i}.jpg"))
    _palette_png(os.path.join(root, "SegmentationClass", f"{i}.png"), _label(h, w))
  for name, ids in (("train", VOC_TRAIN), ("val", VOC_VAL)):
    with open(os.path.join(root, "ImageSets", "Segmentation", f"{name}.txt"), "w") as f:
      f.write("\n".join(ids) + "\n")
  return root


def make_sbd(root):
  os.makedirs(os.path.join(root, "dataset", "img"), exist_ok=True)
  os.makedirs(os.path.join(root, "dataset", "cls"), exist_ok=True)
  for i in SBD_TRAIN + SBD_VAL:
    h, w = RNG.integers(20, 40, 2)
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        os.path.join(root, "dataset", "img", f"{i}.jpg"))
    gt = np.empty((1,), dtype=[("Segmentation", "O"), ("Boundaries", "O")])
    gt[0] = (_label(h, w), np.zeros((1,), "O"))
    scipy.io.savemat(os.path.join(root, "dataset", "cls", f"{i}.mat"), {"GTcls": gt})
  for name, ids in (("train", SBD_TRAIN), ("val", SBD_VAL)):
    with open(os.path.join(root, "dataset", f"{name}.txt"), "w") as f:
      f.write("\n".join(ids) + "\n")
  return root


@pytest.fixture
def folders(tmp_path):
  return make_voc(str(tmp_path / "VOC2012")), make_sbd(str(tmp_path / "SBD"))


def _config(voc_root, sbd_root=None, **kw):
  config = pipeline.default_data_config()
  config.name, config.manual_dir, config.sbd_dir = "voc", voc_root, sbd_root
  config.eval_split, config.crop_size = "seg11valid", 24
  config.update(kw)
  return config


def test_fcn_split_convention(folders):
  voc_root, sbd_root = folders
  train = voc.source(_config(voc_root, sbd_root), "train")
  # SBD train without VOC val images (2007_000003 is in VOC val).
  assert [os.path.basename(p) for p, _ in train.items] == ["2009_000006.jpg", "2009_000007.jpg"]
  valid = voc.source(_config(voc_root, sbd_root), "seg11valid")
  # VOC val without SBD train images.
  assert [os.path.basename(p) for p, _ in valid.items] == ["2007_000004.jpg", "2008_000005.jpg"]
  assert len(voc.source(_config(voc_root), "train")) == 2  # no SBD: VOC train
  info = pipeline.get_info(_config(voc_root, sbd_root))
  assert info.num_classes == 21 and info.num_train == 2 and info.num_eval == 2


def test_examples_decode_to_the_written_labels(folders, tmp_path):
  voc_root, sbd_root = folders
  valid = voc.source(_config(voc_root, sbd_root), "seg11valid")
  image, label = valid[0]
  expected = np.asarray(Image.open(os.path.join(voc_root, "SegmentationClass",
                                                "2007_000004.png")))
  np.testing.assert_array_equal(label, expected)
  assert image.dtype == np.uint8 and image.shape[:2] == label.shape
  sbd_image, sbd_label = voc.source(_config(voc_root, sbd_root), "train")[0]
  mat = scipy.io.loadmat(os.path.join(sbd_root, "dataset", "cls", "2009_000006.mat"))
  np.testing.assert_array_equal(sbd_label, mat["GTcls"][0]["Segmentation"][0])
  ids = tmp_path / "ids.txt"
  ids.write_text("2007_000001\n")
  assert len(voc.source(_config(voc_root), str(ids))) == 1


def test_pipeline_batches_with_ignore_padding(folders):
  voc_root, sbd_root = folders
  config = _config(voc_root, sbd_root, crop_size=48)  # larger than the images: padded
  batch = next(pipeline.train_batches(config, 2, seed=0))
  assert batch["image"].shape == (2, 48, 48, 3) and (batch["label"] == 255).any()
  evals = list(pipeline.eval_batches(config, 1))
  assert len(evals) == 2 and evals[0]["label"].shape[1:] == voc.source(
      config, "seg11valid")[0][1].shape  # batch 1: native size


def _corrupt(path):
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really a png")


BAD_INPUTS = {
    "missing folder": (lambda v, s: "missing", r"VOC folder .*manual_dir"),
    "missing mask": (lambda v, s: os.remove(f"{v}/SegmentationClass/2007_000004.png"),
                     r"2007_000004\.png"),
    "size mismatch": (lambda v, s: _palette_png(f"{v}/SegmentationClass/2007_000004.png",
                                                np.zeros((3, 3))), r"2007_000004.* but its mask"),
    "label out of range": (lambda v, s: _palette_png(
        f"{v}/SegmentationClass/2007_000004.png",
        np.full(np.asarray(Image.open(f"{v}/JPEGImages/2007_000004.jpg")).shape[:2], 40)),
        r"2007_000004\.png has labels \[40\]"),
    "corrupt png": (lambda v, s: _corrupt(f"{v}/SegmentationClass/2007_000004.png"),
                    r"2007_000004\.png is not a readable"),
    "empty split": (lambda v, s: open(f"{v}/ImageSets/Segmentation/val.txt", "w").close(),
                    r"val\.txt is empty"),
    "rgba image": (lambda v, s: Image.new("RGBA", (30, 30)).save(f"{v}/JPEGImages/x.png")
                   or os.replace(f"{v}/JPEGImages/x.png", f"{v}/JPEGImages/2007_000004.jpg"),
                   r"2007_000004\.jpg has mode RGBA"),
    "grayscale image": (lambda v, s: Image.new("L", (30, 30)).save(
        f"{v}/JPEGImages/2007_000004.jpg", format="JPEG"), r"2007_000004\.jpg has mode L"),
    "mat without key": (lambda v, s: scipy.io.savemat(f"{s}/dataset/cls/2009_000006.mat",
                                                      {"GTinst": np.zeros((2, 2))}),
                        r"2009_000006\.mat has no GTcls"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_name_the_file(folders, case):
  voc_root, sbd_root = folders
  damage, message = BAD_INPUTS[case]
  damage(voc_root, sbd_root)
  if case == "missing folder":
    voc_root = os.path.join(voc_root, "nope")
  config = _config(voc_root, sbd_root)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    split = "train" if case == "mat without key" else "seg11valid"
    src = voc.source(config, split)
    for i in range(len(src)):
      src[i]
