"""Grid sweeps: typed parsing, refused sweeps, cross products, seed aggregation."""
import statistics

import pytest

from fcnjax import configs as config_lib
from fcnjax.studies import experiment


@pytest.fixture
def config():
  return config_lib.default_config()


@pytest.mark.parametrize("spec, field, values", [
    ("model.upsample=learned,nearest", "model.upsample", ["learned", "nearest"]),
    ("seed=0,1,2", "seed", [0, 1, 2]),
    ("optimizer.learning_rate=1e-3,0.01", "optimizer.learning_rate", [1e-3, 0.01]),
    ("model.zero_init_score=true,False,0", "model.zero_init_score", [True, False]),
    ("data.scale_range=(0.5,1.5),(1.0,1.0)", "data.scale_range", [(0.5, 1.5), (1.0, 1.0)]),
    ("data.num_eval=8,16", "data.num_eval", [8, 16]),  # a None (placeholder) field
    ("data.data_dir=/tmp/a,/tmp/b", "data.data_dir", ["/tmp/a", "/tmp/b"]),
])
def test_parse_sweep_types(config, spec, field, values):
  if spec.startswith("model.zero_init_score"):
    with pytest.raises(ValueError, match="repeated"):  # 'False' and '0' are the same value
      experiment.parse_sweep(spec, config)
    spec = "model.zero_init_score=true,False"
  got_field, got = experiment.parse_sweep(spec, config)
  assert got_field == field
  assert got == values
  assert [type(v) for v in got] == [type(v) for v in values]


@pytest.mark.parametrize("spec, message", [
    ("model.upsample", "expected field=value"),
    ("", "expected field=value"),
    ("=a,b", "no field name"),
    ("model.upsample=", "empty"),
    ("model.upsample=learned,,nearest", "empty"),
    ("model.upsample=learned;seed=0", "not a valid str"),
    ("model.nope=1,2", "no field 'model.nope'"),
    ("nope.x=1", "no field"),
    ("seed=0,one", "'one' is not a valid int"),
    ("optimizer.learning_rate=fast", "not a valid float"),
    ("optimizer.learning_rate=nan", "not a valid float"),
    ("model.zero_init_score=yes", "not a valid bool"),
    ("data.scale_range=1.5", "not a valid tuple"),
    ("seed=1,1", "repeated"),
])
def test_malformed_sweeps_are_refused_naming_the_sweep(config, spec, message):
  with pytest.raises(ValueError, match=message) as err:
    experiment.parse_sweep(spec, config)
  assert f"--sweep={spec}" in str(err.value) or f"--sweep={spec!r}" in str(err.value)


def test_grid_is_the_cross_product_in_order():
  points = experiment.grid([("model.upsample", ["a", "b", "c"]), ("seed", [0, 1])])
  assert points == [{"model.upsample": u, "seed": s} for u in "abc" for s in (0, 1)]
  assert experiment.run_name(points[1]) == "upsample=a,seed=1"
  with pytest.raises(ValueError, match="swept twice"):
    experiment.grid([("seed", [0]), ("seed", [1])])


def test_an_invalid_value_is_refused_before_anything_trains(config, tmp_path):
  from fcnjax.studies import study
  sweeps = [experiment.parse_sweep("model.upsample=learned,cubic", config)]
  with pytest.raises(ValueError, match="run upsample=cubic,seed=0: .*'cubic'"):
    study.run_grid(config, str(tmp_path), sweeps)
  assert not list(tmp_path.iterdir())


def test_aggregate_mean_std_and_per_seed_values():
  runs = [{"up": u, "seed": s, "mean_iou": v}
          for u, vals in (("a", (0.1, 0.3, 0.2)), ("b", (0.5,))) for s, v in enumerate(vals)]
  rows = experiment.aggregate(runs, ["up", "seed"], metrics=("mean_iou",))
  assert [r["up"] for r in rows] == ["a", "b"]
  assert rows[0]["n"] == 3
  assert rows[0]["mean_iou_values"] == [0.1, 0.3, 0.2]
  assert rows[0]["mean_iou_mean"] == pytest.approx(statistics.mean([0.1, 0.3, 0.2]))
  assert rows[0]["mean_iou_std"] == pytest.approx(statistics.stdev([0.1, 0.3, 0.2]))
  assert rows[1]["mean_iou_std"] != rows[1]["mean_iou_std"]  # NaN for one seed
  assert experiment.mean_std(rows[0], "mean_iou") == "0.2000 ± 0.1000"
  assert experiment.mean_std(rows[1], "mean_iou") == "0.5000"


def test_unset_fields_are_independent_typed_placeholders(config):
  config.data.manual_dir = "/data/voc"
  assert config.data.sbd_dir is None and config.data.data_dir is None
  config.data.num_eval = 8
  assert config.data.num_train is None and config.data.eval_size is None
  with pytest.raises(TypeError):
    config.data.num_train = "many"


def test_an_ablation_runs_through_the_study_runner(tmp_path):
  """fcnjax-ablate's grid as arms x paired seeds of the study runner: each run's
  final weights scored on the eval split (equal to the evaluator's score of the
  latest checkpoint), its key and provenance recorded; the table's mean ± std
  are numpy's over the per-seed scores; a second call reads every run back.
  The arms differ only in how often they log (one program to compile): paired
  seeds train alike in both, so their scores agree seed by seed."""
  import json

  import numpy as np
  from fcnjax import inference
  from fcnjax.studies import study
  from test_train import tiny_config
  config = tiny_config(tmp_path / "tfds", num_train_steps=2, eval_every_steps=2,
                       checkpoint_every_steps=2, log_every_steps=1,
                       **{"model.backbone": "tiny"})
  sweeps = [experiment.parse_sweep("log_every_steps=1,2", config),
            experiment.parse_sweep("seed=0,1", config)]
  work = tmp_path / "ablate"
  runs, summary = study.run_grid(config, str(work), sweeps, metrics=("mean_iou", "pixel_acc"),
                                 log=lambda line: None)
  names = [f"log_every_steps={n},seed={s}" for s in (0, 1) for n in (1, 2)]
  assert [r["name"] for r in runs] == names
  split = config.data.eval_split
  for run in runs:
    with open(work / run["name"] / "run.json") as f:
      assert json.load(f)["key"] == run["key"] and run["provenance"]["commit"]
    assert run["scores"]["step"] == 2 and list(run["scores"]) == ["step", "key", split]
  last = runs[-1]  # its score: the evaluator's of the latest (final) checkpoint
  last_config = experiment.with_fields(config, {"log_every_steps": 2, "seed": 1})
  evaluated = inference.evaluate_workdir(last_config, str(work / last["name"]), "latest")
  assert last["mean_iou"] == pytest.approx(evaluated["mean_iou"], rel=1e-6)
  assert [r["mean_iou"] for r in runs[0::2]] == [r["mean_iou"] for r in runs[1::2]]
  assert len(summary) == 2
  for row in summary:
    values = [r["mean_iou"] for r in runs if r["log_every_steps"] == row["log_every_steps"]]
    assert row["n"] == 2 and row["mean_iou_values"] == values
    assert row["mean_iou_mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert row["mean_iou_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
  with open(work / "results.json") as f:
    written = json.load(f)
  assert written["splits"] == [split] and len(written["runs"]) == 4
  assert (work / "results.md").exists() and (work / "ablation.png").exists()
  again, _ = study.run_grid(config, str(work), sweeps, metrics=("mean_iou", "pixel_acc"),
                            log=lambda line: None)
  assert all(r["cached"] for r in again)
  assert [r["mean_iou"] for r in again] == [r["mean_iou"] for r in runs]
  with pytest.raises(ValueError, match="no runs"):
    study.grid_arms([("seed", [])])
