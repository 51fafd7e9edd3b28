"""TensorBoard event files without TensorFlow, behind clu's writer interface.

`TensorBoardWriter` is a clu `MetricWriter` on tensorboardX, which writes
event files without TensorFlow.

clu's `metric_writers` package imports its TensorFlow summary writer when it
is first imported, and `periodic_actions` imports that package. Where
TensorFlow is not installed, importing this module first points that one name
at `TensorBoardWriter`, so the rest of clu (writers, `periodic_actions`)
imports and works unchanged.

Resuming: `purge_step=s` writes TensorBoard's restart marker, so events of
steps >= s that an interrupted run logged in earlier files are dropped when
the logs are read, and each step appears once.
"""
import importlib.util
import sys
import time
import types

import numpy as np
from clu.internal import utils as clu_utils


def _import_tensorboardx():
  """tensorboardX, without the PyTorch import it makes only to accept torch
  tensors (~1.5 s of every process's start where torch is installed)."""
  hidden = "torch" not in sys.modules
  if hidden:
    sys.modules["torch"] = None  # `import torch` raises ImportError
  try:
    import tensorboardX
  finally:
    if hidden:
      del sys.modules["torch"]
  return tensorboardX


tensorboardX = _import_tensorboardx()

_SUMMARY_WRITER = "clu.metric_writers.summary_writer"


def _hparam(value):
  """A value the hparams plugin shows: bool, number or string."""
  if isinstance(value, np.generic):
    value = value.item()
  return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardWriter:
  """A clu `MetricWriter` (scalars, images (N, H, W, C) uint8 or float in
  [0, 1], texts, hparams) writing TensorBoard event files to `logdir`."""

  def __init__(self, logdir, purge_step=None):
    # tensorboardX names a file by the second and host only: a writer opened
    # in the same second would overwrite the one before. The suffix keeps
    # both, in the (sorted-name) order TensorBoard reads and purges them in.
    self._writer = tensorboardX.SummaryWriter(
        str(logdir), purge_step=None if purge_step is None else int(purge_step),
        filename_suffix=f".{time.time_ns()}")

  def write_scalars(self, step, scalars):
    for tag, value in scalars.items():
      self._writer.add_scalar(tag, float(value), int(step))

  def write_images(self, step, images):
    for tag, batch in images.items():
      batch = np.asarray(batch)
      for i, image in enumerate(batch):
        name = tag if len(batch) == 1 else f"{tag}/{i}"
        self._writer.add_image(name, image, int(step), dataformats="HWC")

  def write_texts(self, step, texts):
    for tag, text in texts.items():
      self._writer.add_text(tag, str(text), int(step))

  def write_hparams(self, hparams):
    # Into this run's own event file: tensorboardX's add_hparams would open a
    # new sub-run per call, so each resume would add one.
    flat = {k: _hparam(v) for k, v in clu_utils.flatten_dict(hparams)}
    for summary in tensorboardX.summary.hparams(flat, {}):
      self._writer.file_writer.add_summary(summary)

  def write_summaries(self, step, values, metadata=None):
    raise NotImplementedError("TensorBoardWriter writes scalars, images, texts and hparams")

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
