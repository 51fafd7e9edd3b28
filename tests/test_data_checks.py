"""Every data file of the train and eval splits is checked before training
(fcnjax.data.check): bad files are all named at once, a passed check is
cached per dataset version, duplicate split ids are refused, and training
stops on a bad validation mask before any step (and before its workdir)."""
import os

import numpy as np
import pytest
from PIL import Image

from fcnjax.data import check, pipeline, voc
from fcnjax.train import loop
from test_data_voc import _config, _palette_png, make_sbd, make_voc
from test_train import tiny_config


@pytest.fixture
def folders(tmp_path, monkeypatch):
  monkeypatch.setenv("FCNJAX_DATA_CHECK_CACHE", str(tmp_path / "cache"))
  return make_voc(str(tmp_path / "VOC2012")), make_sbd(str(tmp_path / "SBD"))


def _count_reads(monkeypatch):
  """A list that grows by one per example read through a VOCSource."""
  reads, real = [], voc.VOCSource.__getitem__
  monkeypatch.setattr(voc.VOCSource, "__getitem__",
                      lambda self, i: reads.append(i) or real(self, i))
  return reads


def test_good_splits_are_checked_once_then_cached(folders, monkeypatch, tmp_path):
  config = _config(*folders)
  reads = _count_reads(monkeypatch)
  assert pipeline.check_splits(config) == {"train": "checked", "eval": "checked"}
  assert len(reads) == 2 + 2  # SBD train minus VOC val, VOC val minus SBD train
  assert len(os.listdir(tmp_path / "cache")) == 2
  assert pipeline.check_splits(config) == {"train": "cached", "eval": "cached"}
  assert len(reads) == 4  # nothing read again
  # A file rewritten (new size / mtime) is a new dataset version: checked again.
  mask = os.path.join(folders[0], "SegmentationClass", "2007_000004.png")
  os.utime(mask, ns=(1, 1))
  assert pipeline.check_splits(config) == {"train": "cached", "eval": "checked"}


def test_every_bad_file_is_named(folders):
  voc_root, sbd_root = folders
  masks, images = f"{voc_root}/SegmentationClass", f"{voc_root}/JPEGImages"
  shape = np.asarray(Image.open(f"{images}/2007_000003.jpg")).shape[:2]
  _palette_png(f"{masks}/2007_000003.png", np.full(shape, 99))  # label 99
  _palette_png(f"{masks}/2007_000004.png", np.zeros((3, 3)))  # size mismatch
  Image.new("L", (30, 30)).save(f"{images}/2008_000005.jpg", format="JPEG")  # grayscale
  data = open(f"{images}/2007_000001.jpg", "rb").read()
  open(f"{images}/2007_000001.jpg", "wb").write(data[:len(data) // 2])  # truncated JPEG
  Image.new("RGB", (30, 30)).save(f"{masks}/2007_000002.png")  # an RGB mask
  config = _config(voc_root, eval_split="val", train_split="train_voc")
  with pytest.raises(check.DataCheckError) as e:
    check.check_split(voc.source(config, "val"), "val")
  message = str(e.value)
  assert message.startswith("3 of 3 examples of split 'val' fail the data checks")
  assert "2007_000003.png has labels [99]" in message
  assert "2007_000004.jpg is" in message and "but its mask" in message
  assert "2008_000005.jpg has mode L" in message
  with pytest.raises(check.DataCheckError) as e:
    pipeline.check_splits(config)
  message = str(e.value)
  assert "2 of 2 examples of split 'train_voc'" in message
  assert "2007_000001.jpg is not a readable image" in message
  assert "2007_000002.png has mode RGB" in message
  assert not os.path.exists(os.environ["FCNJAX_DATA_CHECK_CACHE"])  # no pass recorded


def test_duplicate_ids_in_a_split_file_are_named(folders):
  voc_root, _ = folders
  listed = os.path.join(voc_root, "ImageSets", "Segmentation", "train.txt")
  with open(listed, "a") as f:
    f.write("2007_000002\n2007_000001\n2007_000002\n")
  with pytest.raises(ValueError, match=rf"{listed} lists 2 ids more than once: "
                                       r"2007_000002, 2007_000001$"):
    pipeline.get_info(_config(voc_root, train_split="train_voc", eval_split="val"))


def test_long_lists_show_progress(tmp_path, monkeypatch, capsys):
  path = tmp_path / "a.png"
  Image.new("RGB", (4, 4)).save(path)

  class Source:  # file-backed: 250 examples of one file
    items = [(str(path), str(path))] * 250

    def __len__(self):
      return len(self.items)

    def __getitem__(self, i):
      return None

  assert check.check_split(Source(), "big", directory=str(tmp_path / "c")) == "checked"
  assert "checking big files" in capsys.readouterr().err
  assert check.check_split(Source(), "big", directory=str(tmp_path / "c")) == "cached"


def test_generated_shapes_are_skipped(tmp_path):
  config = tiny_config(tmp_path / "tfds").data
  assert pipeline.check_splits(config, directory=str(tmp_path / "c")) == {
      "train": "skipped", "eval": "skipped"}


def test_training_stops_on_a_bad_eval_mask_before_any_step(folders, tmp_path):
  voc_root, sbd_root = folders
  shape = np.asarray(Image.open(f"{voc_root}/JPEGImages/2008_000005.jpg")).shape[:2]
  _palette_png(f"{voc_root}/SegmentationClass/2008_000005.png", np.full(shape, 99))
  config = tiny_config(tmp_path / "tfds", **{
      "data.name": "voc", "data.tfds_config": "default",  # tiny_config sets shapes' field
      "data.manual_dir": voc_root, "data.sbd_dir": sbd_root,
      "data.train_split": "train", "data.eval_split": "seg11valid",
      "eval_every_steps": 4000, "num_train_steps": 8000})
  workdir = tmp_path / "run"
  with pytest.raises(check.DataCheckError,
                     match=r"1 of 2 examples of split 'seg11valid'(.|\n)*2008_000005\.png "
                           r"has labels \[99\]"):
    loop.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()  # refused before the workdir is made
