"""The TensorFlow-free TensorBoard writer, read back by TensorBoard's own reader."""
import io

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from fcnjax.train import tensorboard


def _read(logdir):
  events = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
  events.Reload()
  return events


def test_scalars_images_and_texts_round_trip(tmp_path):
  writer = tensorboard.TensorBoardWriter(tmp_path)
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (1, 5, 7, 3), dtype=np.uint8)
  writer.write_scalars(3, {"loss": 0.25, "lr": np.float32(1e-3)})
  writer.write_images(3, {"pred": image})
  writer.write_texts(4, {"note": "hello"})
  writer.close()
  events = _read(tmp_path)
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [(3, 0.25)]
  assert np.isclose(events.Scalars("lr")[0].value, 1e-3)
  (png,) = events.Images("pred")
  decoded = np.asarray(Image.open(io.BytesIO(png.encoded_image_string)))
  np.testing.assert_array_equal(decoded, image[0])
  (text,) = events.Tensors("note")
  assert text.step == 4 and text.tensor_proto.string_val == [b"hello"]


def test_purge_step_drops_what_an_interrupted_run_logged_past_it(tmp_path):
  first = tensorboard.TensorBoardWriter(tmp_path)
  for step in range(1, 6):
    first.write_scalars(step, {"loss": float(step)})
  first.close()
  again = tensorboard.TensorBoardWriter(tmp_path, purge_step=4)
  for step in range(4, 7):
    again.write_scalars(step, {"loss": 10.0 * step})
  again.close()
  events = event_accumulator.EventAccumulator(str(tmp_path), purge_orphaned_data=True)
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]
