"""The upsampling study end to end at toy size, run as a user would run it; the
tables and intervals checked against the runs' own results and scipy."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["--config.data.tfds_config=tiny", "--config.data.crop_size=32",
       "--config.model.backbone=tiny", "--config.batch_size=8", "--config.eval_batch_size=8",
       "--config.num_train_steps=4", "--config.log_every_steps=2",
       "--config.eval_every_steps=2", "--config.checkpoint_every_steps=4",
       "--config.optimizer.warmup_steps=0"]
ARMS = ("learned", "bilinear")
SEEDS = (0, 1)  # two paired seeds: the least a paired t interval needs


@pytest.fixture(scope="session")
def study(tmp_path_factory):
  work = tmp_path_factory.mktemp("study")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "upsampling_study.py"),
         f"--workdir={work}", f"--arms={','.join(ARMS)}",
         f"--seeds={','.join(map(str, SEEDS))}",
         f"--config.data.data_dir={work / 'tfds'}", "--layout=in_process"] + TOY
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(work / "results.json") as f:
    return work, json.load(f), proc.stdout


def _test_miou(results, arm):
  runs = sorted((r for r in results["runs"] if r["arm"] == arm), key=lambda r: r["seed"])
  return np.array([r["scores"]["test"]["mean_iou"] for r in runs])


def test_every_run_trains_on_selection_and_scores_its_final_weights(study):
  work, results, _ = study
  assert sorted(r["name"] for r in results["runs"]) == sorted(
      f"{a},seed={s}" for a in ARMS for s in SEEDS)
  for run in results["runs"]:
    assert run["scores"]["step"] == 4  # the final weights, not a best checkpoint
    assert [p[0] for p in run["curves"]["eval_mean_iou"]] == [2, 4]  # selection curve
    with open(work / run["name"] / "scores.json") as f:
      assert json.load(f) == run["scores"]
    curve = run["curves"]["eval_mean_iou"]
    assert run["plateau_gain"] == pytest.approx(curve[1][1] - curve[0][1])
    for split, count in (("test", 16), ("train", 64)):  # tiny: 64 train / 16 test images
      assert run["scores"][split]["num_images"] == count
  assert results["provenance"]["commit"] and results["seeds"] == list(SEEDS)


def _toy_config(work):
  """The toy study's base config, as its command line builds it."""
  from fcnjax.studies import experiment
  from fcnjax.configs.upsampling_study import get_config
  config = get_config()
  for arg in TOY + [f"--config.data.data_dir={work / 'tfds'}"]:
    field, [value] = experiment.parse_sweep(arg[len("--config."):], config)
    config = experiment.with_fields(config, {field: value})
  return config


def test_a_rerun_reads_every_run_back_with_the_same_scores(study):
  """The same study again: nothing is trained, every run is marked cached and
  scored as before (one scoring rule, fresh or resumed)."""
  from fcnjax.studies import study as study_lib
  work, results, _ = study
  # The first invocation trained them: in this process, or (side by side) in its seed
  # processes, whose runs the tables then read back.
  side_by_side = False  # --layout=in_process (side by side: tests/test_study_layout.py)
  assert [run["cached"] for run in results["runs"]] == [side_by_side] * len(results["runs"])
  arms = {run["arm"]: run["fields"] for run in results["runs"]}
  # allow_mixed: a commit landing in the checkout between the two invocations is not
  # what this test is about (the mixing check is tested in test_study_runner).
  again = study_lib.run_arms(_toy_config(work), str(work), arms, SEEDS, log=lambda line: None,
                             allow_mixed=True)
  assert [r["name"] for r in again] == [r["name"] for r in results["runs"]]
  for new, old in zip(again, results["runs"]):
    assert new["cached"] and new["scores"] == old["scores"]


def test_test_scores_equal_an_independent_confusion_matrix(study):
  """One run's test mIoU recomputed with numpy from its checkpoint's predictions."""
  from fcnjax.studies import experiment
  from fcnjax.data import pipeline
  from fcnjax.inference import restore
  from fcnjax.train import step as step_lib
  import jax
  work, results, _ = study
  run = results["runs"][0]
  config = experiment.with_fields(_toy_config(work), {**run["fields"], "seed": run["seed"]})
  state, info = restore(config, str(work / run["name"]), which="latest")
  data = experiment.with_fields(config, {"data.eval_split": "test"}).data
  hist = np.zeros((info.num_classes,) * 2, np.int64)
  for batch in pipeline.eval_batches(data, 8):
    preds = np.asarray(jax.jit(step_lib.predict_step)(state, batch["image"])[0]).ravel()
    labels = batch["label"].ravel()
    keep = labels != 255
    hist += np.bincount(labels[keep] * info.num_classes + preds[keep],
                        minlength=info.num_classes ** 2).reshape(hist.shape)
  iou = np.diag(hist) / (hist.sum(0) + hist.sum(1) - np.diag(hist))
  assert run["scores"]["test"]["mean_iou"] == pytest.approx(np.nanmean(iou), rel=1e-9)
  assert run["scores"]["test"]["pixel_acc"] == pytest.approx(np.trace(hist) / hist.sum())
  # In batches of 5 (the last padded with 4 ignored fillers): every score the same.
  from fcnjax.studies import study as study_lib
  again = study_lib.score_split(experiment.with_fields(config, {"eval_batch_size": 5}),
                                state, info, "test")
  assert again == {k: v for k, v in run["scores"]["test"].items()} and again["num_images"] == 16


def test_pairwise_intervals_are_paired_t_intervals_holm_corrected(study):
  _, results, _ = study
  rows = results["pairwise"]
  assert [r["contrast"] for r in rows] == [f"{a} - {b}" for i, a in enumerate(ARMS)
                                           for b in ARMS[i + 1:]]
  p = []
  for row in rows:
    a, b = _test_miou(results, row["a"]), _test_miou(results, row["b"])
    assert row["mean"] == pytest.approx(np.mean(a - b), abs=1e-12)
    if np.all(a - b == (a - b)[0]):
      p.append(row["p"])
      continue
    test = sps.ttest_rel(a, b)
    ci = test.confidence_interval(0.95)
    assert (row["t_low"], row["t_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
    assert row["p_improvement"] == pytest.approx(np.mean((a > b) + 0.5 * (a == b)))
    p.append(test.pvalue)
  order = np.argsort(p)
  holm = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * np.array(p)[order]))
  np.testing.assert_allclose([rows[i]["p_holm"] for i in order], holm, rtol=1e-9)


def test_tables_show_the_runs_numbers(study):
  work, results, stdout = study
  table = (work / "results.md").read_text()
  for arm in ARMS:
    values = _test_miou(results, arm)
    line = next(l for l in table.splitlines() if l.startswith(f"| {arm} | {len(SEEDS)} |"))
    assert f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" in line
    assert " / ".join(f"{v:.3f}" for v in values) in line
    assert line in stdout
  [row] = results["contrasts"]  # the one pre-registered contrast whose arms both ran
  assert row["contrast"] == "learned vs bilinear (fixed)"
  assert row["mean"] == pytest.approx(np.mean(_test_miou(results, "learned") -
                                              _test_miou(results, "bilinear")), abs=1e-12)
  assert "dense vs sparse" not in table  # its arms did not all run
  costs = results["costs"]
  assert costs["learned"]["params"] > costs["bilinear"]["params"]
  assert costs["learned"]["gflops"] > costs["bilinear"]["gflops"] > 0  # a C x C transpose conv
  for cost in costs.values():
    assert cost["step_ms"] > 0 and cost["peak_mb"] > 0 and cost["infer_ms"] > 0
    assert cost["kept_bytes"] == 0  # no switches kept without max-unpooling
  walls = [run["logged_wall_s"] for run in results["runs"]]  # from each run's event files
  assert all(w > 0 for w in walls) and sum(walls) < results["wall_s"]
  assert f"Compute: {len(walls)} runs, {sum(walls) / 3600:.1f} h" in table
  for row in results["flatness"]:  # the budget rule on the runs' selection curves
    gains = [r["plateau_gain"] for r in results["runs"] if r["arm"] == row["arm"]]
    assert row["median gain"] == f"{np.median(gains):+.3f}"
    assert f"| {row['arm']} | {len(SEEDS)} | {row['median gain']} |" in table


def test_kept_bytes_count_switches_and_skips_by_definition():
  from fcnjax import models
  from fcnjax.studies import study
  decoder = models.build_model(dict(name="decoder", backbone="tiny", upsample="max_unpool",
                                    depth=4), 7)
  # tiny: widths (8, 16, 16, 32), four 2x2 pools of a 32x32 input, 1 byte per switch
  pooled = 16 * 16 * 8 + 8 * 8 * 16 + 4 * 4 * 16 + 2 * 2 * 32
  kept = study.kept_bytes(decoder, (1, 32, 32, 3))
  assert kept["kept_bytes"] == pooled and kept["first_layer_bytes"] == 32 * 32 * 8 * 4
  assert kept["storage_multiplier"] == pytest.approx(pooled / (32 * 32 * 8 * 4))
  nearest = models.build_model(dict(name="decoder", backbone="tiny", upsample="nearest"), 7)
  assert study.kept_bytes(nearest, (1, 32, 32, 3))["kept_bytes"] == 0
  fcn8s = models.build_model(dict(name="fcn", backbone="tiny", variant="8s"), 7)
  # FCN-8s keeps pool3 (4x4x16) and pool4 (2x2x32) of a 32x32 input in float32
  assert study.kept_bytes(fcn8s, (1, 32, 32, 3))["kept_bytes"] == 4 * (4 * 4 * 16 + 2 * 2 * 32)


def test_figures_are_written(study):
  work, _, _ = study
  for name in ("ablation.png", "forest.png", "curves.png", "predictions.png"):
    with Image.open(work / name) as img:
      assert img.size[0] > 200 and img.size[1] > 100
  with Image.open(work / "predictions.png") as img:  # image | truth | 2 arms
    assert img.size[0] > img.size[1] * 0.9
  with Image.open(work / "learned.png") as img:  # one row (bilinear learns nothing)
    assert img.size[0] > 2 * img.size[1]


def test_skip_study_end_to_end_at_toy_size(tmp_path):
  """The skip study's script at toy size: FCN-8s vs SegNet, the pre-registered
  contrast whose arms ran, from the runs' own test scores and scipy."""
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "skip_study.py"),
         f"--workdir={tmp_path}", "--arms=fcn8s,segnet", "--seeds=0,1",
         f"--config.data.data_dir={tmp_path / 'tfds'}"] + TOY
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "results.json") as f:
    results = json.load(f)
  assert sorted(r["name"] for r in results["runs"]) == [
      "fcn8s,seed=0", "fcn8s,seed=1", "segnet,seed=0", "segnet,seed=1"]
  [row] = results["contrasts"]
  assert row["contrast"] == "fcn8s vs segnet"
  a, b = _test_miou(results, "fcn8s"), _test_miou(results, "segnet")
  assert row["mean"] == pytest.approx(np.mean(a - b), abs=1e-12)
  if not np.all(a - b == (a - b)[0]):
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (row["t_low"], row["t_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
  costs = results["costs"]
  # SegNet keeps its switches (uint8), FCN-8s its pool3 / pool4 maps (float32)
  assert costs["segnet"]["kept_bytes"] > 0 and costs["fcn8s"]["kept_bytes"] > 0
  assert (tmp_path / "forest.png").exists() and (tmp_path / "results.md").exists()


@pytest.mark.parametrize("name,folder", [("upsampling", "upsampling_study"),
                                         ("skip", "skip_study")])
def test_recorded_studies_replay_from_their_per_run_scores(name, folder, tmp_path):
  """The recorded studies' per-run scores (their results.json), analysed by
  today's runner with today's study module, give the recorded summary,
  pre-registered contrasts and pairwise table exactly, and the recorded
  results.md's verdicts."""
  from fcnjax.studies import registry, study as study_lib, study_report
  path = os.path.join(ROOT, "experiments", "results", folder)
  with open(os.path.join(path, "results.json")) as f:
    recorded = json.load(f)
  with open(os.path.join(path, "results.md")) as f:
    recorded_md = f.read()
  spec = registry.STUDIES[name]
  arms = list(recorded["arms"])
  replayed = json.loads(json.dumps(study_lib.analyze(recorded["runs"], arms,
                                                     spec.contrasts_for(arms))))
  assert len(recorded["contrasts"]) >= 3 and len(recorded["pairwise"]) >= 15
  for key in ("summary", "contrasts", "pairwise"):
    assert replayed[key] == recorded[key], key
  markdown = study_report.markdown({**recorded, **replayed})
  for row in recorded["contrasts"]:
    assert row["verdict"] in recorded_md and row["verdict"] in markdown
  for arm in arms:  # the collapse rule by its definition, on each run's last selection mIoU
    final = {r["seed"]: r["curves"]["eval_mean_iou"][-1][1] for r in recorded["runs"]
             if r["arm"] == arm}
    collapsed = [s for s, v in final.items()
                 if v < np.median([u for t, u in final.items() if t != s]) - 0.15]
    assert f"| {arm} | {len(collapsed)} of {len(final)} |" in markdown
  if name == "upsampling":  # the recording's own account: max-unpool's seed 2 (0.345)
    assert "| max_unpool | 1 of 5 | max_unpool,seed=2 |" in markdown
    # the report from records alone: tables and curves, no figure that needs weights
    from fcnjax.studies import upsampling
    logged = []
    study_report.write(str(tmp_path), upsampling.get_config(), {**recorded, **replayed},
                       log=logged.append)
    assert (tmp_path / "results.md").read_text().strip() == markdown.strip()
    assert (tmp_path / "curves.png").exists() and not (tmp_path / "predictions.png").exists()
    assert any("no seed has every arm's final weights" in m for m in logged)


def test_figure_seed_is_the_first_with_every_arms_final_weights(tmp_path):
  from fcnjax.studies import study_report
  runs = [{"arm": a, "seed": s, "name": f"{a},seed={s}", "scores": {"step": 30}}
          for s in (0, 1, 2) for a in ("nearest", "carafe")]
  results = {"seeds": [0, 1, 2], "runs": runs}
  assert study_report.figure_seed(str(tmp_path), results) is None
  for name, step in [("nearest,seed=0", 30), ("carafe,seed=0", 20),  # seed 0: not final
                     ("nearest,seed=1", 30), ("nearest,seed=2", 30), ("carafe,seed=2", 30)]:
    (tmp_path / name / "checkpoints" / str(step)).mkdir(parents=True)
  assert study_report.figure_seed(str(tmp_path), results) == 2
  (tmp_path / "carafe,seed=1" / "checkpoints" / "30").mkdir(parents=True)
  assert study_report.figure_seed(str(tmp_path), results) == 1
