"""Workdirs end to end on the tiny shapes data: resume across the pmap and jit
drivers, the 'best' checkpoint as the restore default, init_from chaining
FCN-32s -> 16s -> 8s."""
import json
import os

import jax
import numpy as np
import pytest

from fcnjax import inference
from fcnjax.data import pipeline
from fcnjax.train import assemble, checkpoint, loop
from test_train import tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def _config(data_dir, **fields):
  return tiny_config(data_dir, **{"model.backbone": "tiny", **fields})


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
  """Six jit steps in one go: checkpoints (with eval scores) at steps 3 and 6."""
  workdir = str(tmp_path_factory.mktemp("straight") / "run")
  loop.train_and_evaluate(_config(data_dir, parallel="jit"), workdir)
  return workdir


def _restore(config, workdir, which):
  info = pipeline.get_info(config.data)
  state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
  return checkpoint.restore_state(workdir, state, which=which)


def _flat(params):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def test_resume_from_pmap_with_jit_is_bit_exact(data_dir, straight, tmp_path):
  workdir = str(tmp_path / "resumed")
  no_eval = dict(eval_every_steps=100)
  loop.train_and_evaluate(_config(data_dir, parallel="pmap", num_train_steps=3, **no_eval),
                          workdir)
  loop.train_and_evaluate(_config(data_dir, parallel="jit", **no_eval), workdir)
  config = _config(data_dir)
  a, b = _restore(config, straight, "latest"), _restore(config, workdir, "latest")
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree.leaves((a.params, a.opt_state)),
                  jax.tree.leaves((b.params, b.opt_state))):
    np.testing.assert_array_equal(x, y)


def test_best_is_the_default_restore(data_dir, straight):
  with open(os.path.join(straight, "history.json")) as f:
    scores = dict((step, iou) for step, iou in json.load(f)["eval_mean_iou"])
  best = max(scores.values())
  state, _ = inference.restore(_config(data_dir), straight)  # the entry points' default
  assert scores[int(state.step)] == best
  if scores[3] != scores[6]:
    assert int(state.step) == max(scores, key=scores.get)


def test_init_from_chains_32s_16s_8s(data_dir, tmp_path):
  fcn32, fcn16 = str(tmp_path / "fcn32s"), str(tmp_path / "fcn16s")
  short = dict(num_train_steps=3, eval_every_steps=100)
  loop.train_and_evaluate(_config(data_dir, **short, **{"model.variant": "32s"}), fcn32)
  config16 = _config(data_dir, init_from=fcn32, **short, **{"model.variant": "16s"})
  loop.train_and_evaluate(config16, fcn16)
  trained32 = _flat(checkpoint.restore_params(fcn32, which="best"))
  trained16 = _flat(checkpoint.restore_params(fcn16, which="best"))
  config8 = _config(data_dir, **{"model.variant": "8s"})
  model8 = assemble.build_model(config8, pipeline.get_info(config8.data))
  fresh = assemble.create_state(config8, model8, jax.random.key(0))[0]
  chained = _flat(assemble.load_init(fresh, fcn16).params)
  fresh = _flat(fresh.params)
  for key, value in chained.items():
    source = trained16.get(key)
    expected = source if source is not None and source.shape == value.shape else fresh[key]
    np.testing.assert_array_equal(value, expected, err_msg=key)
  assert any("score_pool4" in k for k in trained16) and any("score_pool3" in k for k in fresh)
  # The 16s run started from the 32s weights: 3 small steps away, not a fresh init.
  shared = [k for k in trained32 if "backbone" in k and trained32[k].ndim == 4]
  moved = sum(np.abs(trained16[k] - trained32[k]).sum() for k in shared)
  apart = sum(np.abs(fresh[k] - trained32[k]).sum() for k in shared)
  assert moved < 0.2 * apart

