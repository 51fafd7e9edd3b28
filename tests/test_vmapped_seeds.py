"""Seeds as one program (`fcnjax.train.seeds`): each seed of a vmapped run
writes the workdir its sequential run writes, with the same numbers within a
float32 bound; the study runner picks it by `vmap_seeds` and says why.

The bound. Both runs do the same arithmetic in another order: the vmapped
convolutions compile to grouped ones, and with 8 devices the seeds are split
over 2 of them, so each seed's batch is summed over 4 devices instead of 8.
Reordering a float32 sum changes it by a few ulps (eps = 2**-23 of its
magnitude); a step chains a few dozen such sums (forward, backward, BN
statistics, Adam's moments and its division by sqrt(v)), and over a few
steps a difference grows about linearly (no chaotic growth yet). So we allow
ULPS_PER_STEP = 64 ulps of each array's scale per step:
  |a - b| <= steps * 64 * eps * max(|a|)  (params, BN statistics, Adam moments)
and the same relative bound on every logged loss. After 4 steps that is
~3e-5 relative; a different seed differs by O(1) and one Adam step moves a
parameter by up to the learning rate (3e-3), so the bound cannot pass for
runs that are not the same run. Measured (this CPU, 8 fake devices): see
`test_vmapped_seeds_equal_sequential_runs`'s printout.
"""
import json
import os

import jax
import numpy as np
import pytest

from fcnjax.studies import experiment, study
from fcnjax.studies.upsampling import get_config
from fcnjax.train import checkpoint, history, loop, seeds

STEPS = 4
ULPS_PER_STEP = 64
EPS = float(np.finfo(np.float32).eps)
RTOL = STEPS * ULPS_PER_STEP * EPS


def _toy(data_dir):
  """The study decoder (BN, the tiny backbone) on the tiny shapes dataset."""
  return experiment.with_fields(get_config(), {
      "data.tfds_config": "tiny", "data.data_dir": str(data_dir), "data.crop_size": 32,
      "model.backbone": "tiny", "model.depth": 3, "model.upsample": "nearest",
      "batch_size": 8, "eval_batch_size": 8, "num_train_steps": STEPS, "log_every_steps": 1,
      "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0})


def _files(run_dir):
  """What a run wrote: its files (event files by kind) and checkpoint steps."""
  names = {"events" if n.startswith("events.out.tfevents") else n for n in os.listdir(run_dir)}
  return names, sorted(os.listdir(os.path.join(run_dir, "checkpoints")))


def _saved(run_dir):
  ckpt = checkpoint.Checkpoints(run_dir, read_only=True)
  try:
    return ckpt.restore_numpy("latest")
  finally:
    ckpt.close()


def _worst(a, b):
  """max over leaves of |a - b| / (steps * eps * max|a|): the difference in
  ulps of each array's scale per step."""
  ratios = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y), initial=0.0) /
                                           (STEPS * EPS * max(np.max(np.abs(x), initial=0.0),
                                                              1e-30))), a, b)
  return max(jax.tree.leaves(ratios))


def test_vmapped_seeds_equal_sequential_runs(tmp_path):
  config, arms, seed_list = _toy(tmp_path / "tfds"), {"nearest": {}}, [0, 1]
  lines = []
  vmapped = study.run_arms(config, str(tmp_path / "vmapped"), arms, seed_list,
                           log=lines.append, splits=("test",), vmap_seeds=True)
  assert "seeds: each arm's seeds as one vmapped program (vmap_seeds=True)" in lines
  worst = {}
  for v in vmapped:  # each seed's sequential run, as loop.train_and_evaluate writes it
    vdir, sdir = (os.path.join(tmp_path, where, v["name"]) for where in ("vmapped", "sequential"))
    loop.train_and_evaluate(experiment.with_fields(config, {"seed": v["seed"]}), sdir)
    (vfiles, vsteps), (sfiles, ssteps) = _files(vdir), _files(sdir)
    assert vfiles == sfiles | {"run.json", "scores.json"}  # the runner's record and scores
    assert vsteps == ssteps and vsteps[-1] == str(STEPS)
    with open(os.path.join(vdir, "config.json")) as f1, open(os.path.join(sdir, "config.json")) as f2:
      assert f1.read() == f2.read()
    with open(os.path.join(vdir, "run.json")) as f:
      assert json.load(f)["trained_as"] == "vmapped seeds [0, 1]"
    assert not v["cached"] and set(v["scores"]) == {"step", "key", "test"}
    # The logged losses (every step) and the selection curve.
    vc, sc = v["curves"], history.load_history(sdir)
    assert [p[0] for p in vc["train_loss"]] == [p[0] for p in sc["train_loss"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([p[1] for p in vc["train_loss"]],
                               [p[1] for p in sc["train_loss"]], rtol=RTOL)
    assert [p[0] for p in vc["eval_mean_iou"]] == [p[0] for p in sc["eval_mean_iou"]]
    np.testing.assert_allclose([p[1] for p in vc["eval_mean_iou"]],
                               [p[1] for p in sc["eval_mean_iou"]], atol=1e-6)
    # The final state: params, BN statistics, Adam's moments.
    vs, ss = _saved(vdir), _saved(sdir)
    assert int(vs["step"]) == int(ss["step"]) == STEPS
    for part in ("params", "batch_stats", "opt_state"):
      worst[part] = max(worst.get(part, 0.0), _worst(ss[part], vs[part]))
    worst["loss"] = max(worst.get("loss", 0.0), max(
        abs(a[1] - b[1]) / (STEPS * EPS * abs(b[1]))
        for a, b in zip(vc["train_loss"], sc["train_loss"])))
  print("ulps per step (bound %d):" % ULPS_PER_STEP,
        {k: round(w, 2) for k, w in worst.items()})
  assert max(worst.values()) <= ULPS_PER_STEP, worst
  # The seeds are different runs (the bound could not pass for them).
  assert _worst(*(_saved(os.path.join(tmp_path, "sequential", v["name"]))["params"]
                  for v in vmapped)) > 100 * ULPS_PER_STEP
  # A re-run reads every vmapped run back from the cache, trains nothing.
  again = study.run_arms(config, str(tmp_path / "vmapped"), arms, seed_list,
                         log=lines.append, splits=("test",), vmap_seeds=True)
  assert [r["cached"] for r in again] == [True, True]
  assert [r["scores"] for r in again] == [r["scores"] for r in vmapped]
  # The throughput probe (the programs above, from the compilation cache).
  for num_seeds in (0, 2):
    out = seeds.throughput(config, num_seeds, steps=1, repeats=1)
    assert out["seeds"] == num_seeds and out["images_per_s"] > 0 and out["compile_s"] > 0


def test_the_runner_says_when_it_vmaps():
  lines = []
  assert jax.default_backend() == "cpu"
  assert not study.use_vmap_seeds("auto", 4, lines.append)
  assert "0.56x" in lines[-1] and "one run after another" in lines[-1]
  assert study.use_vmap_seeds(True, 4, lines.append)
  assert not study.use_vmap_seeds(True, 1, lines.append) and "single seed" in lines[-1]
  assert not study.use_vmap_seeds(False, 4, lines.append)
  with pytest.raises(ValueError, match="vmap_seeds='yes'"):
    study.use_vmap_seeds("yes", 4)


def test_mesh_splits_seeds_then_batches():
  assert seeds.mesh_shape(2, 8, 8, 8) == (2, 4)
  assert seeds.mesh_shape(3, 8, 8, 8) == (1, 8)
  assert seeds.mesh_shape(4, 8, 6, 6) == (4, 2)
  assert seeds.mesh_shape(4, 8, 8, 3) == (4, 1)
  assert seeds.mesh_shape(16, 1, 16, 16) == (1, 1)


def test_configs_must_differ_in_the_seed_only(tmp_path):
  config = _toy(tmp_path)
  one = experiment.with_fields(config, {"seed": 1})
  with pytest.raises(ValueError, match="differs from seed 0's"):
    seeds.check_same_but_seed([config, experiment.with_fields(one, {"batch_size": 4})])
  with pytest.raises(ValueError, match="repeat"):
    seeds.check_same_but_seed([config, config])
  seeds.check_same_but_seed([config, one])
