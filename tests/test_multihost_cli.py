"""Two processes through the real command line: train (with eval and
checkpoints), then evaluate; both finish and leave no unfinished checkpoint."""
import glob
import json
import os
import sys

import numpy as np

from fcnjax.data import pipeline
from test_multihost import run_two_processes
from test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "fcn8s_shapes.py")
TINY = {"data.tfds_config": "tiny", "data.crop_size": 32, "batch_size": 8,
        "eval_batch_size": 8, "num_train_steps": 4, "log_every_steps": 2,
        "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0,
        "optimizer.schedule": "constant"}


def _command(module, workdir, data_dir, extra=()):
  overrides = [f"--config.{k}={v}" for k, v in {**TINY, "data.data_dir": data_dir}.items()]
  return lambda port, i: [
      sys.executable, "-m", module, f"--config={CONFIG}", f"--workdir={workdir}",
      f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
      *overrides, *extra]


def test_two_process_train_then_evaluate(tmp_path):
  data_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "run")
  pipeline.get_info(tiny_config(data_dir).data)  # prepared once, not by both processes
  # One CPU device per process (no forced device count).
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  codes, logs = run_two_processes(_command("fcnjax.main", workdir, data_dir), env)
  assert codes == [0, 0], "\n".join(log[-4000:] for log in logs)
  assert glob.glob(os.path.join(workdir, "**", "*orbax-checkpoint-tmp*"), recursive=True) == []
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  assert not os.path.exists(os.path.join(workdir, ".lock"))

  codes, logs = run_two_processes(
      _command("fcnjax.evaluate", workdir, data_dir, ["--checkpoint=best"]), env)
  assert codes == [0, 0], "\n".join(log[-4000:] for log in logs)
  assert glob.glob(os.path.join(workdir, "**", "*orbax-checkpoint-tmp*"), recursive=True) == []
  # The best step and its score are those the training recorded at its evaluations.
  with open(os.path.join(workdir, "history.json")) as f:
    evals = json.load(f)["eval_mean_iou"]
  assert [step for step, _ in evals] == [2, 4]
  best_step, best_iou = max(evals, key=lambda p: (p[1], p[0]))
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    results = json.load(f)
  assert results["step"] == best_step
  np.testing.assert_allclose(results["mean_iou"], best_iou, rtol=1e-5)
