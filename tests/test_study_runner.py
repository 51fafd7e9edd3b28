"""The study runner in-process: a study registered from outside the package runs,
reports its status, reads back runs scored under the same key and retrains a
changed arm (the old run moved aside, nothing deleted); mixing machines or
code is refused by name."""
import json
import math
import os
import shutil

import numpy as np
import pytest

from fcnjax.data import pipeline
from fcnjax.studies import experiment, registry, spec, study
from fcnjax.train import assemble, validate
from fcnjax.studies.upsampling import get_config


def _toy(data_dir):
  return experiment.with_fields(get_config(), {
      "data.tfds_config": "tiny", "data.data_dir": str(data_dir), "data.crop_size": 32,
      "model.backbone": "tiny", "model.depth": 3, "batch_size": 8, "eval_batch_size": 8,
      "num_train_steps": 2, "log_every_steps": 1, "eval_every_steps": 2,
      "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0})


TOY_STUDY = spec.Study(
    name="toy", config_file=__file__,
    arms={"nearest": {"model.upsample": "nearest"}, "bilinear": {"model.upsample": "bilinear"}},
    contrasts=lambda labels: {"nearest vs bilinear": (
        {"nearest": 1.0, "bilinear": -1.0}, "nearest", "bilinear")},
    declared={"nearest vs bilinear": "2026-12-06"}, scored_splits=("test",), seeds=2,
    published={"bilinear": "41.68-42.11", "carafe": "42.82"})


def _count_calls(monkeypatch, *targets):
  """{name: calls so far} of each (module, function name), counted from now on."""
  calls = {}
  for module, name in targets:
    calls[name], original = 0, getattr(module, name)

    def counted(*args, _name=name, _original=original, **kwargs):
      calls[_name] += 1
      return _original(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)
  return calls


def test_a_study_from_outside_runs_resumes_and_retrains_what_changed(tmp_path, monkeypatch):
  monkeypatch.setitem(registry.STUDIES, "toy", TOY_STUDY)
  config, work, seeds = _toy(tmp_path / "tfds"), str(tmp_path / "study"), [0, 1]
  arms = registry.STUDIES["toy"].select()
  rows, _ = study.status(config, work, arms, seeds)
  assert [r["state"] for r in rows] == ["left"] * 4
  shorter = {**arms, "bilinear": {**arms["bilinear"], "num_train_steps": 1}}
  assert {(r["arm"], r["steps"]) for r in study.status(config, work, shorter, seeds)[0]} == {
      ("nearest", config.num_train_steps), ("bilinear", 1)}  # each run's own budget
  calls = _count_calls(monkeypatch, (validate, "check_fields"), (assemble, "build_model"),
                       (pipeline, "get_info"))
  one = study.run_study(config, work, arms, [0], {}, log=lambda line: None,
                        splits=TOY_STUDY.scored_splits)  # seed by seed: no comparison yet
  # Each run's config is checked and resolved once, where the study starts; training,
  # scoring and restoring receive it resolved.
  assert calls == {"check_fields": 2, "build_model": 2, "get_info": 2}
  monkeypatch.undo()
  monkeypatch.setitem(registry.STUDIES, "toy", TOY_STUDY)
  assert set(one) == {"runs"} and [r["seed"] for r in one["runs"]] == [0, 0]
  assert not os.path.exists(os.path.join(work, "results.json"))
  results = study.run_study(config, work, arms, seeds, TOY_STUDY.contrasts_for(list(arms)),
                            log=lambda line: None, splits=TOY_STUDY.scored_splits,
                            declared=TOY_STUDY.declared, published=TOY_STUDY.published)
  assert [c["contrast"] for c in results["contrasts"]] == ["nearest vs bilinear"]
  assert results["published"] == {"bilinear": "41.68-42.11"}  # the arms that ran
  with open(os.path.join(work, "results.md")) as f:
    assert next(line for line in f if line.startswith("| bilinear |")).count("41.68-42.11") == 1
  assert results["declared"] == {"nearest vs bilinear": "2026-12-06"}
  assert [r["cached"] for r in results["runs"]] == [True, True, False, False]
  for run in results["runs"]:
    assert set(run["scores"]) == {"step", "key", "test"}  # the study's scored splits only
    with open(os.path.join(work, run["name"], "run.json")) as f:
      record = json.load(f)
    assert record["key"] == run["key"] and record["provenance"]["cpu"]
    assert record["provenance"]["jaxlib"] and record["provenance"]["commit"]
  rows, eta = study.status(config, work, arms, seeds)
  assert [r["state"] for r in rows] == ["done"] * 4 and eta == 0
  curves = {r["name"]: r["curves"]["eval_mean_iou"] for r in results["runs"]}
  for row in rows:  # each run's selection curve as it reported it: the pilot's figure
    np.testing.assert_equal(np.asarray(row["curve"]),
                            np.asarray(curves[f"{row['arm']},seed={row['seed']}"]))
  # The time left, in a copy: walls 10 and 30 s (nearest), 100 s (bilinear, seed 1 not
  # scored): nearest seed 2 at its arm's mean, bilinear seeds 1 and 2 at theirs.
  copy = os.path.join(os.path.dirname(work), "status_copy")
  shutil.copytree(work, copy)
  for name, wall in [("nearest,seed=0", 10.0), ("nearest,seed=1", 30.0),
                     ("bilinear,seed=0", 100.0)]:
    with open(os.path.join(copy, name, "run.json")) as f:
      record = json.load(f)
    with open(os.path.join(copy, name, "run.json"), "w") as f:
      json.dump({**record, "train_wall_s": wall}, f)
  os.remove(os.path.join(copy, "bilinear,seed=1", "scores.json"))
  third, eta = study.status(config, copy, arms, list(seeds) + [2])
  assert [(r["arm"], r["seed"]) for r in third if r["state"] != "done"] == [
      ("bilinear", 1), ("nearest", 2), ("bilinear", 2)]
  assert eta == pytest.approx(20.0 + 2 * 100.0)
  # Read back as trained (a pinned worktree's runs), whatever this checkout's code key.
  monkeypatch.setattr(study, "code_hash", lambda: "another checkout")
  assert {r["state"] for r in study.status(config, work, arms, seeds)[0]} == {"stale"}
  assert {r["state"] for r in study.status(config, work, arms, seeds, as_trained=True)[0]} == {
      "done"}
  read, trained_at = study.read_runs(config, work, arms, seeds, log=lambda line: None)
  assert [r["scores"] for r in read] == [r["scores"] for r in results["runs"]]
  assert trained_at == results["runs"][0]["provenance"]
  with pytest.raises(ValueError, match=r"nearest,seed=2: not trained and scored to step 2"):
    study.read_runs(config, work, arms, [0, 1, 2], log=lambda line: None)
  with pytest.raises(ValueError, match=r"nearest,seed=0: its config differs .*'log_every_steps'"):
    study.read_runs(experiment.with_fields(config, {"log_every_steps": 2}), work, arms, seeds,
                    log=lambda line: None)
  saved = os.path.join(work, "nearest,seed=0", "config.json")
  with open(saved) as f:
    older = json.load(f)
  del older["boundary_width"]  # a field newer than the run: its default was the run's
  with open(saved, "w") as f:
    json.dump(older, f)
  assert len(study.read_runs(config, work, arms, seeds, log=lambda line: None)[0]) == 4
  monkeypatch.undo()
  monkeypatch.setitem(registry.STUDIES, "toy", TOY_STUDY)
  gains = {r["name"]: r["plateau_gain"] for r in results["runs"]}
  for row in rows:  # read from the selection curve, as the run reported it
    np.testing.assert_equal(row["gain last 20 %"], gains[f"{row['arm']},seed={row['seed']}"])
  # The bilinear arm changes (another operator under the same label): its runs are
  # stale, retrained; the nearest runs are read back.
  changed = {**arms, "bilinear": {"model.upsample": "bed_of_nails"}}
  rows, _ = study.status(config, work, changed, seeds)
  assert {(r["arm"], r["state"]) for r in rows} == {("nearest", "done"), ("bilinear", "stale")}
  again = study.run_arms(config, work, changed, seeds, log=lambda line: None,
                         splits=("test",))
  assert [(r["arm"], r["seed"]) for r in again] == [  # seed by seed
      ("nearest", 0), ("bilinear", 0), ("nearest", 1), ("bilinear", 1)]
  assert [r["cached"] for r in again] == [True, False, True, False]
  old = {r["name"]: r for r in results["runs"]}
  for run in again[0::2]:
    assert run["scores"] == old[run["name"]]["scores"]
  for run in again[1::2]:
    assert run["key"] != old[run["name"]]["key"]
    assert os.path.isdir(os.path.join(work, f"{run['name']}.stale-{old[run['name']]['key']}"))


def test_mixing_is_refused_by_name_unless_allowed():
  here = study.provenance()
  runs = {("a", 0): {"provenance": here},
          ("b", 0): {"provenance": {**here, "cpu": "another CPU"}},
          ("a", 1): {"provenance": {**here, "jaxlib": "0.0.1"}},
          ("a", 2): {"provenance": here},  # one CPU, another thread count
          ("b", 2): {"provenance": {**here, "cpus_used": here["cpus_used"] + 1}},
          ("a", 3): {"provenance": here},  # one CPU name, another VM (its kernel build)
          ("b", 3): {"provenance": {**here, "machine": "Linux-6.18.44-fc-v1272-x86_64"}}}
  with pytest.raises(ValueError, match=r"a,seed=1: jaxlib '0.0.1'.*seed 0 ran on 2 CPUs.*"
                     r"seed 2 ran on 2 CPUs: .*\(\d+ cores used\): \['a'\].*"
                     r"seed 3 ran on 2 CPUs: .*on Linux-6.18.44-fc-v1272-x86_64 .*\['b'\]"):
    study.check_mixing(runs, here)
  assert len(study.check_mixing(runs, here, allow_mixed=True)) == 4
  assert here["cpu_id"] == "" or len(here["cpu_id"].split()) == 2  # family/model/stepping flags
  assert study.check_mixing({("a", 0): {"provenance": here}}, here) == []
  both = {("a", 0): {"provenance": here, "trained_as": "vmapped seeds [0, 1]"},
          ("b", 0): {"provenance": here}}
  with pytest.raises(ValueError, match=r"trained both ways: vmapped: \['a,seed=0'\]"):
    study.check_mixing(both, here)


def test_unknown_arms_and_undeclared_contrasts_are_refused():
  with pytest.raises(ValueError, match=r"--arms: unknown \['cubic'\] for study 'toy'"):
    TOY_STUDY.select(["nearest", "cubic"])
  undated = spec.Study(name="x", config_file="", arms=TOY_STUDY.arms,
                       contrasts=TOY_STUDY.contrasts, declared={})
  with pytest.raises(ValueError, match="has no declared date"):
    undated.contrasts_for(["nearest", "bilinear"])
  # The registered studies' contrasts all carry their dates.
  for s in registry.STUDIES.values():
    s.contrasts_for(list(s.arms))


def test_flatness_is_the_median_seed_rule():
  rows = [{"arm": "a", "gain last 20 %": g} for g in (0.001, 0.02, 0.005)] + [
      {"arm": "b", "gain last 20 %": g} for g in ("+0.020", "+0.030", None)]
  assert study.flatness(rows) == [
      {"arm": "a", "seeds": 3, "median gain": "+0.005", "worst gain": "+0.020", "flat": "yes"},
      {"arm": "b", "seeds": 2, "median gain": "+0.025", "worst gain": "+0.030", "flat": "no"}]


def test_the_code_key_ignores_comments_and_docstrings_not_code(tmp_path, monkeypatch):
  """code_hash over a copy of the package: a comment, a docstring and a blank
  line leave it as it was; one line of code changes it."""
  import shutil
  import fcnjax
  package = tmp_path / "fcnjax"
  shutil.copytree(os.path.dirname(fcnjax.__file__), package,
                  ignore=shutil.ignore_patterns("__pycache__"))
  monkeypatch.setattr(fcnjax, "__file__", str(package / "__init__.py"))
  before = study.code_hash()
  losses = package / "train" / "losses.py"
  source = losses.read_text()
  edited = source.replace('"""', '"""Reworded. ', 1).replace("\nimport", "\n# a note\n\nimport", 1)
  losses.write_text(edited)
  assert edited != source and study.code_hash() == before
  losses.write_text(edited + "\nEPSILON = 1e-6\n")  # one line of code more
  assert study.code_hash() != before


def test_a_runs_wall_time_sums_the_processes_that_trained_it(tmp_path, monkeypatch):
  """Two processes (a run and its resumption), each an event file opened at its
  first time: first to last event of each, summed (the pause between is not in it)."""
  import time
  from tensorboardX import SummaryWriter
  for times in ((100.0, 115.5, 130.0), (500.0, 510.0)):
    monkeypatch.setattr(time, "time", lambda: times[0])  # the file's opening event
    with SummaryWriter(str(tmp_path), filename_suffix=f".{times[0]:.0f}") as writer:
      for step, t in enumerate(times):
        writer.add_scalar("train_loss", 1.0, step, walltime=t)
  assert study.logged_wall_s(str(tmp_path)) == pytest.approx(30.0 + 10.0)
  assert study.logged_wall_s(str(tmp_path / "none")) == 0.0


def test_a_resumed_runs_training_walls_add_up(tmp_path):
  study._record_run(str(tmp_path), "k", 100.04)
  study._record_run(str(tmp_path), "k", 20.0)  # the second segment, after a preemption
  with open(tmp_path / "run.json") as f:
    record = json.load(f)
  assert record["train_wall_s"] == 120.0 and record["resumed"]["train_wall_s"] == 20.0


def test_pilot_power_from_the_first_seeds_selection_scores():
  from scipy import stats as sps
  a, b = [0.70, 0.74, 0.69, 0.80], [0.66, 0.73, 0.60, 0.75]
  rows = [{"arm": arm, "seed": s, "selection mIoU": v}
          for arm, values in (("a", a), ("b", b)) for s, v in enumerate(values)]
  rows.append({"arm": "a", "seed": 4, "selection mIoU": 0.9})  # b's seed 4 not finished
  rows.append({"arm": "b", "seed": 4, "selection mIoU": None})
  contrasts = {"a vs b": ({"a": 1.0, "b": -1.0}, "a", "b"),
               "a vs c": ({"a": 1.0, "c": -1.0}, "a", "c")}  # c never ran: left out
  [row] = study.pilot_power(rows, contrasts)
  d = np.subtract(a, b)
  z = sps.norm.ppf(1 - 0.05 / 2 / 2) + sps.norm.ppf(0.8)  # Holm's first level of two
  assert row["seeds"] == 4 and float(row["mean d"]) == round(d.mean(), 4)
  assert float(row["sd d"]) == round(d.std(ddof=1), 4)
  assert row["seeds needed (observed mean)"] == math.ceil((z * d.std(ddof=1) / d.mean()) ** 2) + 1
  assert row["seeds needed (0.02)"] == math.ceil((z * d.std(ddof=1) / 0.02) ** 2) + 1


def test_the_pilot_trains_each_arm_to_its_own_budget_and_reads_the_selection_curve(tmp_path):
  config, work = _toy(tmp_path / "tfds"), str(tmp_path / "pilot")
  arms = {"nearest": {"model.upsample": "nearest", "num_train_steps": 4},
          "bilinear": {"model.upsample": "bilinear"}}
  runs, per_arm = study.pilot(config, work, arms, seeds=[0], log=lambda line: None)
  assert [(r["arm"], r["steps"]) for r in runs] == [("nearest", 4), ("bilinear", 2)]
  assert [[s for s, _ in r["curve"]] for r in runs] == [[2, 4], [2]]  # every 2 steps
  (_, first), (_, last) = runs[0]["curve"]  # 80 % of 4 steps: the value at step 2
  assert runs[0]["gain last 20 %"] == f"{last - first:+.3f}"
  assert runs[1]["gain last 20 %"] == "+nan"  # one point: no window to read
  assert not os.path.exists(os.path.join(work, "nearest,seed=0", "scores.json"))
  assert [(a["arm"], a["seeds"]) for a in per_arm] == [("nearest", 1), ("bilinear", 1)]
