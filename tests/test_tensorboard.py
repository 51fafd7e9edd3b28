"""The TensorFlow-free TensorBoard writer, read back by TensorBoard's own reader."""
import importlib.util
import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from fcnjax.train import tensorboard


def _read(logdir):
  events = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0},
      purge_orphaned_data=True)
  events.Reload()
  return events


def _decode(image_event):
  return np.asarray(Image.open(io.BytesIO(image_event.encoded_image_string)))


def test_scalars_images_and_texts_round_trip(tmp_path):
  writer = tensorboard.TensorBoardWriter(tmp_path)
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (1, 5, 7, 3), dtype=np.uint8)
  pair = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
  writer.write_scalars(3, {"loss": 0.25, "lr": np.float32(1e-3)})
  writer.write_scalars(5, {"loss": 0.125})
  writer.write_images(3, {"pred": image, "pair": pair})
  writer.write_texts(4, {"note": "hello"})
  writer.close()
  events = _read(tmp_path)
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [(3, 0.25), (5, 0.125)]
  assert [e.step for e in events.Scalars("lr")] == [3]
  assert np.isclose(events.Scalars("lr")[0].value, 1e-3)
  (png,) = events.Images("pred")
  assert png.step == 3 and (png.height, png.width) == (5, 7)
  np.testing.assert_array_equal(_decode(png), image[0])
  for i in range(2):  # a batch: one tag per image
    np.testing.assert_array_equal(_decode(events.Images(f"pair/{i}")[0]), pair[i])
  (text,) = events.Tensors("note/text_summary")  # tensorboardX's tag for texts
  assert text.step == 4 and text.tensor_proto.string_val == [b"hello"]


def test_float_images_are_scaled_from_unit_range(tmp_path):
  writer = tensorboard.TensorBoardWriter(tmp_path)
  image = np.zeros((1, 2, 3, 3), np.float32)
  image[0, 1] = 1.0
  writer.write_images(0, {"mask": image})
  writer.close()
  decoded = _decode(_read(tmp_path).Images("mask")[0])
  np.testing.assert_array_equal(decoded, (image[0] * 255).astype(np.uint8))


def test_hparams_are_flattened_into_the_run_itself(tmp_path):
  writer = tensorboard.TensorBoardWriter(tmp_path)
  writer.write_hparams({"lr": 0.5, "model": {"name": "fcn8s", "depth": 5}, "bf16": True,
                        "scale": np.float32(2.0), "crop": (3, 4)})
  writer.close()
  events = _read(tmp_path)
  # EventAccumulator reads tmp_path itself, not sub-runs.
  (content,) = [c for tag, c in events.PluginTagToContent("hparams").items()
                if tag.endswith("session_start_info")]
  hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
  assert {k: v.WhichOneof("kind") for k, v in hparams.items()} == {
      "lr": "number_value", "model.name": "string_value", "model.depth": "number_value",
      "bf16": "bool_value", "scale": "number_value", "crop.0": "number_value",
      "crop.1": "number_value"}
  assert hparams["lr"].number_value == 0.5 and hparams["model.name"].string_value == "fcn8s"
  assert hparams["model.depth"].number_value == 5 and hparams["bf16"].bool_value
  assert hparams["scale"].number_value == 2.0 and hparams["crop.1"].number_value == 4


def test_purge_step_drops_what_an_interrupted_run_logged_past_it(tmp_path):
  first = tensorboard.TensorBoardWriter(tmp_path)
  for step in range(1, 6):
    first.write_scalars(step, {"loss": float(step)})
  first.close()
  again = tensorboard.TensorBoardWriter(tmp_path, purge_step=4)
  for step in range(4, 7):
    again.write_scalars(step, {"loss": 10.0 * step})
  again.close()
  assert [(e.step, e.value) for e in _read(tmp_path).Scalars("loss")] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]


def test_create_writer_writes_events_only_where_not_just_logging(tmp_path):
  for name, just_logging in (("main", False), ("other", True)):
    writer = tensorboard.create_writer(tmp_path / name, purge_step=1,
                                       just_logging=just_logging)
    writer.write_scalars(1, {"loss": 2.0})
    writer.close()
  assert [(e.step, e.value) for e in _read(tmp_path / "main").Scalars("loss")] == [(1, 2.0)]
  assert not (tmp_path / "other").exists() or not list((tmp_path / "other").iterdir())


def test_clu_imports_and_uses_this_writer_without_tensorflow():
  if importlib.util.find_spec("tensorflow"):
    pytest.skip("TensorFlow is installed: clu uses its own writer")
  from clu import metric_writers, periodic_actions  # noqa: F401  both import TensorFlow's writer
  assert metric_writers.SummaryWriter is tensorboard.TensorBoardWriter
