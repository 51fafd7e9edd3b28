"""fcnjax.stats against scipy, numpy and hand computation on known inputs."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from fcnjax import stats


def test_holm_matches_the_step_down_definition():
  p = [0.01, 0.04, 0.03, 0.005]
  # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), running maximum
  expected = {3: 0.02, 0: 0.03, 2: 0.06, 1: 0.06}
  adjusted = stats.holm(p)
  for i, value in expected.items():
    assert adjusted[i] == pytest.approx(value, rel=1e-12)
  assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1


def test_interval_is_the_t_interval_of_the_differences():
  d = np.array([0.096, 0.021, 0.094, 0.05, 0.07])
  row = stats.interval(d)
  half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
  assert row["mean"] == pytest.approx(d.mean(), rel=1e-12)
  assert row["t_low"] == pytest.approx(d.mean() - half, rel=1e-9)
  assert row["t_high"] == pytest.approx(d.mean() + half, rel=1e-9)
  t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
  assert row["p"] == pytest.approx(2 * sps.t.sf(abs(t), len(d) - 1), rel=1e-9)
  # percentile bootstrap of the mean: inside the sample's range, around the mean
  assert d.min() <= row["boot_low"] < d.mean() < row["boot_high"] <= d.max()


def test_bootstrap_interval_matches_resampling_by_hand():
  d = np.array([0.3, -0.1, 0.2, 0.05, 0.15, 0.0])
  row = stats.interval(d, n_resamples=20000)
  rng = np.random.default_rng(123)
  means = d[rng.integers(0, len(d), (20000, len(d)))].mean(1)
  lo, hi = np.percentile(means, [2.5, 97.5])
  assert row["boot_low"] == pytest.approx(lo, abs=0.01)
  assert row["boot_high"] == pytest.approx(hi, abs=0.01)


def test_iqm_and_probability_of_improvement():
  assert stats.iqm([1, 2, 3, 4, 100, 5, 6, 7]) == pytest.approx(np.mean([3, 4, 5, 6]))
  assert stats.prob_improvement([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx((1 + .5 + 0 + 1) / 4)


def test_contrast_is_the_weighted_sum_per_seed():
  scores = {"a": [0.5, 0.6], "b": [0.4, 0.2], "c": [0.3, 0.3]}
  d = stats.contrast_values(scores, {"a": 0.5, "b": 0.5, "c": -1.0})
  np.testing.assert_allclose(d, [0.5 * 0.5 + 0.5 * 0.4 - 0.3, 0.5 * 0.6 + 0.5 * 0.2 - 0.3])
  with pytest.raises(ValueError, match="sum to 0"):
    stats.contrast_values(scores, {"a": 1.0})
  with pytest.raises(ValueError, match=r"\['z'\]"):
    stats.contrast_values(scores, {"a": 1.0, "z": -1.0})


def test_compare_answers_each_contrast_in_one_of_three_ways():
  rng = np.random.default_rng(0)
  base = rng.normal(0.5, 0.1, 8)  # a large seed effect, shared by every arm
  scores = {"big": base + 0.1 + rng.normal(0, 0.005, 8),
            "same": base + rng.normal(0, 0.002, 8),
            "ref": base + rng.normal(0, 0.002, 8),
            "noisy": base + rng.normal(0, 0.2, 8)}
  rows = {r["contrast"]: r for r in stats.compare(scores, {
      "big": ({"big": 1, "ref": -1}, "big", "ref"),
      "same": ({"same": 1, "ref": -1}, "same", "ref"),
      "noisy": ({"noisy": 1, "ref": -1}, "noisy", "ref")})}
  assert rows["big"]["verdict"].startswith("big > ref")
  assert rows["same"]["verdict"].startswith("equivalent within")
  assert rows["noisy"]["verdict"].startswith("not resolved at 8 seeds")
  p = [rows[k]["p"] for k in ("big", "same", "noisy")]
  np.testing.assert_allclose([rows[k]["p_holm"] for k in ("big", "same", "noisy")],
                             stats.holm(p))
  # the paired design: an unpaired test on the same numbers cannot see the effect
  assert sps.ttest_ind(scores["big"], scores["ref"]).pvalue > rows["big"]["p"] * 100


def test_pairwise_lists_every_pair_once():
  pairs = stats.pairwise(["a", "b", "c"])
  assert list(pairs) == ["a - b", "a - c", "b - c"]
  assert pairs["a - c"] == ({"a": 1.0, "c": -1.0}, "a", "c")


def test_leave_one_out_marks_a_verdict_carried_by_one_seed_fragile():
  # 6 seeds: A beats B by 0.05 +- 0.005 on five; with seed 5 as well the spread
  # is large. "C" is A shifted by a constant: A vs C is resolved however you drop.
  a = np.array([0.60, 0.61, 0.62, 0.60, 0.61, 0.90])
  b = a - np.array([0.05, 0.055, 0.045, 0.05, 0.052, -0.30])
  c = a - 0.1
  contrasts = {"A vs B": ({"A": 1.0, "B": -1.0}, "A", "B"),
               "A vs C": ({"A": 1.0, "C": -1.0}, "A", "C")}
  scores = {"A": a, "B": b, "C": c}
  full = {r["contrast"]: r["verdict"] for r in stats.compare(scores, contrasts)}
  assert full["A vs B"].startswith("not resolved")
  out = stats.leave_one_out(scores, contrasts)
  assert out["A vs C"] == {"robust": True, "flips": []}
  assert not out["A vs B"]["robust"]
  assert [i for i, _ in out["A vs B"]["flips"]] == [5]  # only dropping seed 5 resolves it
  assert out["A vs B"]["flips"][0][1].startswith("A > B")


def test_collapse_rule_and_seeds_needed_follow_their_definitions():
  assert stats.collapsed([0.55, 0.56, 0.35, 0.57, 0.54]) == [2]
  assert stats.collapsed([0.55, 0.45, 0.50]) == []  # within 0.15 of the others' median
  d = np.array([0.01, 0.03, 0.02, 0.00, 0.04])  # mean 0.02, std 0.01581
  z = 1.959964 + 0.841621  # normal quantiles at 0.975 and 0.8
  assert stats.seeds_needed(d) == int(np.ceil((z * d.std(ddof=1) / 0.02) ** 2)) + 1
  z3 = 2.393980 + 0.841621  # alpha / 3
  assert stats.seeds_needed(d, family=3) == int(np.ceil((z3 * d.std(ddof=1) / 0.02) ** 2)) + 1
