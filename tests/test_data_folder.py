"""The folder dataset (fcnjax/data/folder.py) on generated fixture folders: the
default layout with index, palette and RGB colour masks; ADE20K's and
Cityscapes' layouts trained two steps through their packaged configs; the
file list and the checks cached per dataset version; bad inputs as one
`error:` line naming the file, with nothing written."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from fcnjax import configs as config_lib
from fcnjax.configs import fcn8s_ade20k, fcn8s_cityscapes_folder
from fcnjax.data import check, cityscapes, folder, pipeline
from fcnjax.runtime import errors
from fcnjax.studies import experiment
from fcnjax.train import loop

RNG = np.random.default_rng(0)
CLASSES = (("background", (0, 0, 0)), ("cat", (200, 0, 0)), ("dog", (0, 200, 0)))


@pytest.fixture(autouse=True)
def check_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("FCNJAX_DATA_CHECK_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


def _image(path, h, w):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _mask(path, label, mode="L"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if mode == "RGB":
    colors = np.array([c for _, c in CLASSES] + [[0, 0, 0]] * 252 + [[224, 224, 192]], np.uint8)
    Image.fromarray(colors[label]).save(path)
  else:
    img = Image.fromarray(label.astype(np.uint8), mode=mode)
    if mode == "P":
      img.putpalette(pipeline.palette_lib.palette(256).reshape(-1).tolist())
    img.save(path)


def make_folder(root, mode="L", colors=True, splits=(("train", 8), ("val", 8))):
  """root/images/<split>/<stem>.jpg|.png + root/masks/<split>/<stem>.png +
  classes.txt; {mask path: the labels written}."""
  written = {}
  for split, n in splits:
    for i in range(n):
      h, w = (32, 40) if i % 2 else (40, 32)
      stem = f"{split}_{i:03d}"
      suffix = ".png" if i == 1 else ".JPG" if i == 2 else ".jpg"  # any listed suffix, any case
      _image(f"{root}/images/{split}/{stem}{suffix}", h, w)
      label = RNG.integers(0, len(CLASSES), (h, w)).astype(np.uint8)
      label[0] = 255  # an ignore border
      _mask(f"{root}/masks/{split}/{stem}.png", label, mode)
      written[f"{root}/masks/{split}/{stem}.png"] = label
  with open(f"{root}/classes.txt", "w") as f:
    f.write("".join(f"{name} {r} {g} {b}\n" if colors else f"{name}\n"
                    for name, (r, g, b) in CLASSES))
  return written


def _data(root, **kw):
  config = pipeline.default_data_config()
  config.update(dict(name="folder", root=str(root), eval_split="val", crop_size=24, **kw))
  return config


@pytest.mark.parametrize("mode", ["L", "P", "RGB"])
def test_masks_of_each_kind_decode_to_the_written_labels(tmp_path, mode):
  written = make_folder(str(tmp_path), mode)
  info = pipeline.get_info(_data(tmp_path))
  assert info.class_names == ("background", "cat", "dog") and info.num_classes == 3
  np.testing.assert_array_equal(info.palette, [c for _, c in CLASSES])  # classes.txt colours
  assert (info.num_train, info.num_eval) == (8, 8)
  source = pipeline.get_source(_data(tmp_path), "eval")
  for (image_path, mask_path), i in zip(source.items, range(len(source))):
    image, label = source[i]
    np.testing.assert_array_equal(label, written[mask_path])
    assert image.shape == label.shape + (3,) and image.dtype == np.uint8
  assert [os.path.basename(p) for p, _ in source.items[:3]] == [
      "val_000.jpg", "val_001.png", "val_002.JPG"]


def test_classes_from_the_config_and_names_with_spaces(tmp_path):
  make_folder(str(tmp_path), colors=False)
  info = pipeline.get_info(_data(tmp_path))
  assert info.class_names == ("background", "cat", "dog")
  np.testing.assert_array_equal(info.palette, pipeline.palette_lib.palette(3))  # VOC colours
  (tmp_path / "classes.txt").write_text("traffic light 250 170 30\nsky 70 130 180\n")
  assert folder.read_classes(str(tmp_path / "classes.txt"))[0] == ("traffic light", "sky")
  info = pipeline.get_info(_data(tmp_path, class_names=("a", "b", "c", "d")))
  assert info.class_names == ("a", "b", "c", "d")


def test_value_table_reduce_zero_label_then_label_map():
  np.testing.assert_array_equal(folder.value_table(True, ())[[0, 1, 2, 150, 255]],
                                [255, 0, 1, 149, 255])
  table = folder.value_table(False, ((7, 0), (26, 13)))
  np.testing.assert_array_equal(table[[7, 26, 0, 8, 255]], [0, 13, 255, 255, 255])
  assert folder.value_table(False, ()) is None
  np.testing.assert_array_equal(folder.value_table(True, ((1, 5),))[[2, 1, 0]], [5, 255, 255])


def make_ade20k(root, n_train=8, n_val=8):
  """ADEChallengeData2016's layout; stored values 0 (other) .. 150."""
  written = {}
  for split, n, prefix in (("training", n_train, "train"), ("validation", n_val, "val")):
    for i in range(n):
      h, w = (40, 56) if i % 2 else (48, 36)
      stem = f"ADE_{prefix}_{i + 1:08d}"
      _image(f"{root}/images/{split}/{stem}.jpg", h, w)
      stored = RNG.integers(0, 151, (h, w)).astype(np.uint8)
      _mask(f"{root}/annotations/{split}/{stem}.png", stored)
      written[f"{root}/annotations/{split}/{stem}.png"] = stored
  with open(f"{root}/objectInfo150.txt", "w") as f:  # in the release, not read
    f.write("Idx\tRatio\tTrain\tVal\tName\n")
  return written


def make_cityscapes(root, cities=(("train", ("aachen", "bochum")), ("val", ("frankfurt",))),
                    per_city=4):
  """leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/ with the other
  gtFine files (colour, instance ids, polygons) beside the label ids."""
  written = {}
  for split, names in cities:
    for city in names:
      for i in range(per_city):
        stem = f"{city}_{i:06d}_000019"
        _image(f"{root}/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", 32, 64)
        ids = RNG.integers(0, 34, (32, 64)).astype(np.uint8)
        gt = f"{root}/gtFine/{split}/{city}/{stem}_gtFine"
        _mask(f"{gt}_labelIds.png", ids)
        _mask(f"{gt}_instanceIds.png", ids)
        Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(f"{gt}_color.png")
        with open(f"{gt}_polygons.json", "w") as f:
          f.write("{}")
        written[f"{gt}_labelIds.png"] = ids
  return written


def test_ade20k_layout_reduces_the_zero_label(tmp_path):
  root = tmp_path / "ADEChallengeData2016"
  written = make_ade20k(str(root))
  data = experiment.with_fields(fcn8s_ade20k.get_config(), {"data.root": str(root)}).data
  info = pipeline.get_info(data)
  assert info.num_classes == 150 and info.class_names[:3] == ("wall", "building", "sky")
  assert (info.num_train, info.num_eval) == (8, 8)
  source = pipeline.get_source(data, "eval")
  _, label = source[0]
  stored = written[source.items[0][1]]
  np.testing.assert_array_equal(label, np.where(stored == 0, 255, stored - 1))


def test_cityscapes_layout_maps_label_ids_to_train_ids(tmp_path):
  root = tmp_path / "cityscapes"
  written = make_cityscapes(str(root))
  data = experiment.with_fields(fcn8s_cityscapes_folder.get_config(),
                                {"data.root": str(root)}).data
  info = pipeline.get_info(data)
  assert info.class_names == cityscapes.CLASS_NAMES
  assert (info.num_train, info.num_eval) == (8, 4)
  source = pipeline.get_source(data, "train")
  assert [os.path.relpath(p, root) for p in source.items[0]] == [
      "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
      "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"]
  _, label = source[5]
  expected = np.asarray(cityscapes.label_map(), np.uint8)[written[source.items[5][1]]]
  np.testing.assert_array_equal(label, expected)
  assert set(np.unique(label)) <= set(range(19)) | {255}
  batch = next(pipeline.train_batches(experiment.with_fields(
      data, {"crop_size": 16, "crop_width": 48}), 2, seed=0, num_threads=0))
  assert batch["image"].shape == (2, 16, 48, 3) and batch["label"].shape == (2, 16, 48)


def test_the_file_list_is_kept_until_a_folder_changes(tmp_path, monkeypatch):
  make_folder(str(tmp_path))
  walks, real = [], folder._walk
  monkeypatch.setattr(folder, "_walk", lambda *a: walks.append(a[0]) or real(*a))
  data = _data(tmp_path)
  pipeline.get_info(data)
  assert len(walks) == 4  # images and masks of train and val
  pipeline.get_info(data)
  pipeline.get_source(data, "train")
  assert len(walks) == 4  # listed once
  _image(f"{tmp_path}/images/val/extra.jpg", 32, 40)
  _mask(f"{tmp_path}/masks/val/extra.png", np.zeros((32, 40)))
  assert pipeline.get_info(data).num_eval == 9 and len(walks) == 6  # val listed again


def test_checks_are_cached_per_files_and_label_rules(tmp_path, check_cache):
  make_folder(str(tmp_path), "RGB")
  data = _data(tmp_path)
  assert pipeline.check_splits(data) == {"train": "checked", "eval": "checked"}
  assert pipeline.check_splits(data) == {"train": "cached", "eval": "cached"}
  # Other label rules over the same files: another dataset version, read again.
  (tmp_path / "classes.txt").write_text("background 0 0 0\ncat 200 0 0\n")
  with pytest.raises(check.DataCheckError, match=r"has a colour not in .*classes\.txt: "
                                                 r"\(0, 200, 0\)"):
    pipeline.check_splits(data)


def _train_config(config, root, **overrides):
  """`config` with a tiny model and two steps on the folder at root."""
  fields = {"data.root": str(root), "data.crop_size": 32, "data.num_threads": 0,
            "model.backbone": "tiny", "model.dropout_rate": 0.0, "batch_size": 8,
            "eval_batch_size": 8, "num_train_steps": 2, "log_every_steps": 1,
            "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0,
            "init_from": ""}
  fields.update(overrides)
  return experiment.with_fields(config, fields)


@pytest.mark.parametrize("name", ["ade20k", "cityscapes"])
def test_packaged_config_trains_two_steps_on_its_layout(tmp_path, name):
  if name == "ade20k":
    root = tmp_path / "ADEChallengeData2016"
    make_ade20k(str(root))
    config = _train_config(fcn8s_ade20k.get_config(), root)
  else:
    root = tmp_path / "cityscapes"
    make_cityscapes(str(root), cities=(("train", ("aachen", "bochum")),
                                       ("val", ("frankfurt", "lindau"))))
    config = _train_config(fcn8s_cityscapes_folder.get_config(), root,
                           **{"data.crop_width": 64})
  scores = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(scores["pixel_acc"])
  assert len(scores["per_class_iou"]) == (150 if name == "ade20k" else 19)
  assert os.path.isdir(tmp_path / "run" / "checkpoints")


def _damage_unpaired_mask(root):
  _mask(f"{root}/masks/val/lonely.png", np.zeros((32, 40)))
  return f"mask {root}/masks/val/lonely.png has no image (expected " \
         f"{root}/images/val/lonely{{.jpg,.jpeg,.png}})"


def _damage_unknown_colour(root):
  path = f"{root}/masks/val/val_003.png"
  rgb = np.asarray(Image.open(path)).copy()
  rgb[5, 5] = (10, 20, 30)
  Image.fromarray(rgb).save(path)
  return f"mask {path} has a colour not in {root}/classes.txt: (10, 20, 30)"


def _damage_label_out_of_range(root):
  path = f"{root}/masks/val/val_004.png"
  _mask(path, np.full((40, 32), 7))
  return f"mask {path} has labels [7] outside [0, 3) and not 255 (ignore)"


def _damage_duplicate_stem(root):
  _image(f"{root}/images/val/val_005.png", 32, 40)
  return (f"images {root}/images/val/val_005.jpg and {root}/images/val/val_005.png share "
          "the stem 'val_005': keep one")


def _damage_rgb_mask_without_colours(root):
  (root / "classes.txt").write_text("background\ncat\ndog\n")
  return f"{root}/masks/train/train_000.png is an RGB colour mask but {root}/classes.txt gives no"


def _damage_missing_split(root):
  os.rename(f"{root}/images/val", f"{root}/images/validation")
  return f"folder {root}/images/val not found (split 'val'): {root}/images holds the splits " \
         "['train', 'validation']"


BAD_INPUTS = {"unpaired mask": _damage_unpaired_mask, "unknown colour": _damage_unknown_colour,
              "label out of range": _damage_label_out_of_range,
              "duplicate stem": _damage_duplicate_stem,
              "rgb mask without colours": _damage_rgb_mask_without_colours,
              "missing split": _damage_missing_split}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_error_line_naming_the_file_and_nothing_is_written(
    tmp_path, check_cache, case):
  root = tmp_path / "data"
  make_folder(str(root), "RGB" if case in ("unknown colour", "rgb mask without colours")
              else "L")
  expected = BAD_INPUTS[case](root)
  config = _train_config(config_lib.default_config(), root,
                         **{"data.name": "folder", "data.eval_split": "val"})
  workdir = tmp_path / "run"
  with pytest.raises(SystemExit) as e:
    errors.as_messages(lambda argv: loop.train_and_evaluate(config, str(workdir)), [])
  line = str(e.value.code)
  assert line.startswith("error: ") and "\n" not in line and expected in line, line
  assert not workdir.exists()  # refused before the workdir is made
  passed = [json.load(open(check_cache / f))["split"] for f in os.listdir(check_cache)] \
      if check_cache.exists() else []
  assert passed in ([], ["train"])  # only the good train split's pass is recorded
  with pytest.raises(ValueError if case != "missing split" else FileNotFoundError):
    loop.train_and_evaluate(config, str(workdir))

