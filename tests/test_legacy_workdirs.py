"""Workdirs written before the operator protocol (tests/fixtures/legacy, made at
commit 20beecc by its make.py) restore with today's code and give that code's
logits: the parameter names did not change, and a SegNet run whose config said
the then-ignored upsample='learned' is still its max-unpooling net."""
import json
import os

import numpy as np
import pytest

from fcnjax import inference
from fcnjax.train import assemble
from fixtures.legacy.make import RUNS, legacy_config

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "legacy")


@pytest.mark.parametrize("name", list(RUNS))
def test_legacy_workdir_restores_with_the_same_logits(name, tmp_path):
  workdir = os.path.join(HERE, name)
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert "upsample_options" not in saved["model"]  # written before the protocol
  assert saved["model"]["upsample"] == "learned"
  config = legacy_config(tmp_path / "tfds", RUNS[name])
  state, info = inference.restore(config, workdir, "latest")
  model = assemble.build_model(config, info)
  inputs = np.load(os.path.join(HERE, "inputs.npy"))
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, inputs)
  # The same float32 program: equal up to XLA's freedom to reorder a sum.
  np.testing.assert_allclose(logits, np.load(os.path.join(workdir, "logits.npy")),
                             rtol=1e-5, atol=1e-6)
