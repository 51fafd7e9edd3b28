"""Resumes that would silently change a run are refused, naming the fields,
before the workdir is written; config.change_schedule=True follows the new
schedule from the resumed step; a run with no steps left prints its scores."""
import os
import re

import pytest

from fcnjax import configs as config_lib
from fcnjax.train import loop, optim, resume, validate
from test_checkpoint import _snapshot
from test_train import _tensorboard_scalars, tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def _config(data_dir, **overrides):
  return tiny_config(data_dir, **{"model.backbone": "tiny", "optimizer.schedule": "cosine",
                                  **overrides})


def test_which_fields_shape_the_schedule():
  saved = config_lib.default_config()
  saved.optimizer.schedule = "constant"
  config = config_lib.default_config()
  config.optimizer.schedule = "constant"
  config.num_train_steps = saved.num_train_steps + 100
  assert resume.schedule_changes(saved.to_dict(), config) == []  # a constant rate ignores it
  config.optimizer.schedule = "cosine"
  assert resume.schedule_changes(saved.to_dict(), config) == [
      "num_train_steps: checkpoint 1500, config 1600",
      "optimizer.schedule: checkpoint 'constant', config 'cosine'"]
  saved.optimizer.schedule, config.optimizer.learning_rate = "cosine", 1e-4
  assert resume.schedule_changes(saved.to_dict(), config) == [
      "num_train_steps: checkpoint 1500, config 1600",
      "optimizer.learning_rate: checkpoint 0.003, config 0.0001"]


def test_resume_guards(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(_config(data_dir), workdir)  # cosine over 6 steps
  config_json = os.path.join(workdir, "config.json")
  before = _snapshot(workdir)

  with pytest.raises(validate.ConfigError, match=re.escape(
      f"the checkpoints in {workdir} are at step 6, past config.num_train_steps=3")):
    loop.train_and_evaluate(_config(data_dir, num_train_steps=3), workdir)
  with pytest.raises(validate.ConfigError, match=re.escape(
      "would change its learning-rate schedule: num_train_steps: checkpoint 6, config 8")):
    loop.train_and_evaluate(_config(data_dir, num_train_steps=8), workdir)
  with pytest.raises(validate.ConfigError, match=re.escape(
      "optimizer.learning_rate: checkpoint 0.003, config 0.001")):
    loop.train_and_evaluate(_config(data_dir, **{"optimizer.learning_rate": 1e-3}), workdir)
  assert _snapshot(workdir) == before  # config.json, checkpoints, history: untouched

  # Extended on purpose: steps 7-8 follow the cosine over 8 steps.
  longer = _config(data_dir, num_train_steps=8, change_schedule=True)
  loop.train_and_evaluate(longer, workdir)
  rates = dict(_tensorboard_scalars(workdir, "learning_rate"))
  new, old = (optim.learning_rate_schedule(longer.optimizer, n) for n in (8, 6))
  assert rates[8] == pytest.approx(float(new(7)), rel=1e-6)
  assert rates[6] == pytest.approx(float(old(5)), rel=1e-6)  # the first part kept its curve
  assert float(new(7)) != pytest.approx(float(old(7)))
  with open(config_json) as f:
    assert '"num_train_steps": 8' in f.read()


def test_a_run_with_no_steps_left_prints_its_scores(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  config = _config(data_dir, num_train_steps=3)
  first = loop.train_and_evaluate(config, workdir)
  capsys.readouterr()
  assert loop.train_and_evaluate(config, workdir) is None
  out = capsys.readouterr().out
  assert f"{workdir} is already at step 3 of 3: nothing to train" in out
  assert f"mean_iou={first['mean_iou']:.4f}" in out
