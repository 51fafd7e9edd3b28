"""The pieces of a run, built from its config: model, train state, loss,
parallel driver, init-from params and class weights. Training, evaluation, studies and
benchmarks build them here, so they all build them the same way.

A config is checked once, where a program starts (`prepare`), and resolved into
a `Prepared` run (the config, its dataset's info, its model) that the layers
below receive: training, scoring and restoring take a `Prepared` as it is and
re-check nothing.
"""
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fcnjax import metrics as seg_metrics
from fcnjax import models
from fcnjax.data import pipeline
from fcnjax.train import checkpoint, losses, optim, parallel, params_io, validate
from fcnjax.train import state as state_lib


def check_num_classes(config, info):
  """config.num_classes, when set, must be the dataset's class count."""
  if config.get("num_classes") and config.num_classes != info.num_classes:
    raise validate.ConfigError(f"config.num_classes={config.num_classes} but dataset "
                               f"{config.data.name!r} has {info.num_classes} classes")


class Prepared(NamedTuple):
  """A run's config checked and resolved: `info` (pipeline.DataInfo) and `model`."""
  config: Any
  info: Any
  model: Any


def prepare(run):
  """A config -> Prepared, after clear errors for settings that cannot work
  (`validate.check_fields`, the class count): once, before anything is
  compiled or written. A Prepared is returned as it is."""
  if isinstance(run, Prepared):
    return run
  validate.check_fields(run)
  info = pipeline.get_info(run.data)
  check_num_classes(run, info)
  return Prepared(run, info, build_model(run, info))


def config_of(run):
  """The config of a run given as a config or as its Prepared."""
  return run.config if isinstance(run, Prepared) else run


def build_model(config, info):
  return models.build_model(config.model, info.num_classes,
                            dtype=validate.DTYPES[config.dtype], axis_name=parallel.AXIS)


def class_weights(config, info):
  """None, or (C,) median-frequency weights over the training split's labels."""
  if config.get("class_weighting", "none") == "none":
    return None
  source = pipeline.get_source(config.data, "train")
  weights = seg_metrics.median_frequency_weights((source[i][1] for i in range(len(source))),
                                                 info.num_classes)
  logging.info("Median-frequency class weights: %s", np.round(weights, 3).tolist())
  return weights


def create_state(config, model, rng):
  optimizer, schedule = optim.create_optimizer(config.optimizer, config.num_train_steps)
  shape = (1, config.data.crop_size, config.data.crop_size, config.data.get("channels", 3))
  return state_lib.create_train_state(model, optimizer, rng, shape), schedule


def make_loss(config, class_weights=None):
  """The training loss `config.loss.name` (`losses.LOSSES`, e.g. 'ce+0.5*dice') with
  config.loss_reduction; class_weights (C,) (`assemble.class_weights`)."""
  loss = config.get("loss") or {}  # configs saved before config.loss: cross-entropy
  return losses.make_loss(loss.get("name", "ce"), reduction=config.loss_reduction,
                          class_weights=class_weights,
                          focal_gamma=loss.get("focal_gamma", 2.0))


def make_driver(config, info, class_weights=None):
  """The config's parallel driver (`parallel.make_driver`) for this dataset,
  training `make_loss(config, class_weights)`."""
  return parallel.make_driver(config.parallel, loss_fn=make_loss(config, class_weights),
                              num_classes=info.num_classes,
                              boundary_width=config.boundary_width,
                              num_devices=config.get("num_devices"))


def adapt_input_conv(kernel, channels):
  """A pretrained first conv (kh, kw, 3, O) for `channels` inputs, as timm's
  adapt_input_conv does: summed over RGB for 1 (a gray image g seen as
  (g, g, g)); RGB repeated cyclically to `channels` and scaled by 3 / channels
  for more (an image of channels (R, G, B, R, G, B) gets the RGB response)."""
  kernel = np.asarray(kernel)
  if channels == 1:
    return kernel.sum(axis=2, keepdims=True)
  repeated = np.tile(kernel, (1, 1, -(-channels // 3), 1))[:, :, :channels]
  return repeated * (3.0 / channels)


def merge_params(target, source, channels=3):
  """Copies every leaf of `source` whose path and shape exist in `target`.

  Returns (merged params, number of leaves copied): how a converted VGG16 or
  the previous FCN stage (32s -> 16s -> 8s) initialises a model. channels:
  the target's input channels; when not 3, a (kh, kw, 3, O) kernel whose
  target is (kh, kw, channels, O) -- the first conv -- is adapted
  (`adapt_input_conv`).
  """
  flat_src = {jax.tree_util.keystr(k): v for k, v in
              jax.tree_util.tree_flatten_with_path(source)[0]}
  copied = 0

  def pick(path, leaf):
    nonlocal copied
    src = flat_src.get(jax.tree_util.keystr(path))
    if src is None:
      return leaf
    if (channels != 3 and np.ndim(src) == 4 and np.shape(src)[2] == 3
        and np.shape(leaf) == np.shape(src)[:2] + (channels,) + np.shape(src)[3:]):
      src = adapt_input_conv(src, channels)
    if np.shape(src) == np.shape(leaf):
      copied += 1
      return jnp.asarray(src, leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(pick, target), copied


def load_init(state, init_from, channels=3):
  """init_from: a workdir with checkpoints, or a .npz of flattened params;
  channels: the model's input channels (`merge_params`)."""
  if os.path.isdir(init_from):
    source = checkpoint.restore_params(init_from, which="best")
  elif init_from.endswith(".npz") and os.path.isfile(init_from):
    source = params_io.load_npz(init_from)
  else:
    raise FileNotFoundError(f"config.init_from={init_from!r} is neither a workdir "
                            "nor a .npz params file")
  params, copied = merge_params(state.params, source, channels)
  if not copied:
    raise ValueError(f"config.init_from={init_from!r}: no parameter matched the model")
  logging.info("Initialised %d parameter arrays from %s", copied, init_from)
  return state.replace(params=params)
