"""TensorBoard event files without TensorFlow, behind clu's writer interface.

`TensorBoardWriter` writes scalars, images and texts with the `tensorboard`
package alone (the protos and event-file writer it ships). clu's
`metric_writers` package imports its TensorFlow summary writer when it is
first imported; where TensorFlow is not installed, importing this module
first points that one name at `TensorBoardWriter`, so the rest of clu
(writers, `periodic_actions`) works unchanged.

Resuming: `purge_step=s` writes TensorBoard's restart marker, so events of
steps >= s that an interrupted run logged in earlier files are dropped when
the logs are read, and each step appears once.
"""
import importlib.util
import io
import json
import sys
import time
import types

import numpy as np

_SUMMARY_WRITER = "clu.metric_writers.summary_writer"


class TensorBoardWriter:
  """A clu `MetricWriter` (scalars, images (N, H, W, C) uint8/float in [0, 1],
  texts, hparams as text) writing TensorBoard event files to `logdir`."""

  def __init__(self, logdir, purge_step=None):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._writer = EventFileWriter(str(logdir))
    if purge_step is not None:
      start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
      self._add(event_pb2.Event(step=int(purge_step), session_log=start))

  def _add(self, event):
    event.wall_time = time.time()
    self._writer.add_event(event)

  def _summary(self, step, values):
    summary = self._summary_pb2.Summary(value=values)
    self._add(self._event_pb2.Event(step=int(step), summary=summary))

  def write_scalars(self, step, scalars):
    value = self._summary_pb2.Summary.Value
    self._summary(step, [value(tag=k, simple_value=float(v)) for k, v in scalars.items()])

  def write_images(self, step, images):
    from PIL import Image
    values = []
    for tag, batch in images.items():
      batch = np.asarray(batch)
      if batch.dtype != np.uint8:
        batch = np.clip(np.round(batch * 255), 0, 255).astype(np.uint8)
      for i, image in enumerate(batch):
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, "PNG")
        encoded = self._summary_pb2.Summary.Image(
            height=image.shape[0], width=image.shape[1], colorspace=image.shape[-1],
            encoded_image_string=buffer.getvalue())
        name = tag if len(batch) == 1 else f"{tag}/{i}"
        values.append(self._summary_pb2.Summary.Value(tag=name, image=encoded))
    self._summary(step, values)

  def write_texts(self, step, texts):
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2
    summary_pb2 = self._summary_pb2
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
    values = [summary_pb2.Summary.Value(
        tag=k, metadata=metadata,
        tensor=tensor_pb2.TensorProto(dtype=7, string_val=[str(v).encode()],  # DT_STRING
                                      tensor_shape=tensor_shape_pb2.TensorShapeProto()))
              for k, v in texts.items()]
    self._summary(step, values)

  def write_hparams(self, hparams):
    self.write_texts(0, {"hparams": json.dumps(dict(hparams), indent=2, default=str)})

  def write_summaries(self, step, values, metadata=None):
    raise NotImplementedError("TensorBoardWriter writes scalars, images and texts")

  write_videos = write_audios = write_histograms = write_summaries

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


def _stand_in_for_clu_summary_writer():
  """Without TensorFlow, clu's summary_writer module is this one's writer."""
  if _SUMMARY_WRITER in sys.modules or importlib.util.find_spec("tensorflow"):
    return
  module = types.ModuleType(_SUMMARY_WRITER)
  module.SummaryWriter = TensorBoardWriter
  sys.modules[_SUMMARY_WRITER] = module


_stand_in_for_clu_summary_writer()


def create_writer(logdir, *, purge_step=None, just_logging=False):
  """Console (absl) + TensorBoard writer; only the console one where
  just_logging (processes other than 0)."""
  from clu import metric_writers
  writers = [metric_writers.LoggingWriter()]
  if not just_logging:
    writers.append(TensorBoardWriter(logdir, purge_step))
  return metric_writers.MultiWriter(writers)
