"""The upsampling study end to end at toy size, run as a user would run it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["--config.data.tfds_config=tiny", "--config.data.crop_size=32",
       "--config.model.backbone=tiny", "--config.batch_size=8", "--config.eval_batch_size=8",
       "--config.num_train_steps=4", "--config.log_every_steps=2",
       "--config.eval_every_steps=2", "--config.checkpoint_every_steps=4",
       "--config.optimizer.warmup_steps=0"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  work = tmp_path_factory.mktemp("study")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "upsampling_study.py"),
         f"--workdir={work}", "--variants=nearest,max_unpool", "--seeds=0,1",
         f"--config.data.data_dir={work / 'tfds'}"] + TOY
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(work / "results.json") as f:
    return work, json.load(f), proc.stdout


def test_every_run_is_in_the_table_with_its_own_scores(study):
  work, results, _ = study
  runs = results["runs"]
  assert sorted(r["name"] for r in runs) == sorted(
      f"upsample={u},seed={s}" for u in ("nearest", "max_unpool") for s in (0, 1))
  for run in runs:  # the study's numbers are the runs' own final evaluations
    with open(work / run["name"] / "history.json") as f:
      history = json.load(f)
    assert history["eval_mean_iou"][-1] == [4, pytest.approx(run["mean_iou"])]
    assert history["eval_boundary_iou"][-1][1] == pytest.approx(run["boundary_iou"],
                                                                nan_ok=True)
    assert [p[0] for p in history["eval_mean_iou"]] == [2, 4]


def test_summary_is_mean_and_std_over_seeds(study):
  work, results, stdout = study
  table = (work / "results.md").read_text()
  for row in results["summary"]:
    values = [r["mean_iou"] for r in results["runs"]
              if r["model.upsample"] == row["model.upsample"]]
    assert row["mean_iou_values"] == values
    assert row["mean_iou_mean"] == pytest.approx(np.mean(values))
    assert row["mean_iou_std"] == pytest.approx(np.std(values, ddof=1))
    line = next(l for l in table.splitlines() if l.startswith(f"| {row['model.upsample']} |"))
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in line
    assert line in stdout


def test_costs_count_switch_bytes_by_definition(study):
  _, results, _ = study
  costs = results["costs"]
  # tiny decoder: widths (8, 16, 16, 32), four 2x2 pools of a 32x32 crop
  pooled = 16 * 16 * 8 + 8 * 8 * 16 + 4 * 4 * 16 + 2 * 2 * 32
  assert costs["max_unpool"]["unpool_bytes"] == pooled
  assert costs["max_unpool"]["indices_int64_if_switches"] == 8 * pooled
  assert costs["max_unpool"]["prepool_f32_if_switches"] == 16 * pooled
  assert costs["nearest"]["unpool_bytes"] == 0
  assert costs["nearest"]["params"] == costs["max_unpool"]["params"]  # parameter-free ops
  for cost in costs.values():
    assert cost["step_ms"] > 0 and cost["peak_mb"] > 0


def test_figures_are_written(study):
  work, _, _ = study
  for name in ("ablation.png", "curves.png", "predictions.png"):
    with Image.open(work / name) as img:
      assert img.size[0] > 200 and img.size[1] > 100
  with Image.open(work / "predictions.png") as img:  # image | truth | 2 variants
    assert img.size[0] > img.size[1] * 0.9
