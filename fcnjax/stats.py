"""Statistics for paired-seed studies: contrasts with intervals, Holm, IQM, P(A > B).

Seed s means the same data order (and, where the shapes allow, the same
initialisation) in every arm, so arms are compared seed by seed. A contrast
is a weight per arm, {arm: w} with the weights summing to 0; its value for
seed s is d_s = sum_a w_a * x[a, s] (for A vs B: d_s = x[A, s] - x[B, s]).
Over the n paired seeds it is reported as the mean of d, two 95 % intervals
(Student t on d: `scipy.stats.ttest_1samp`; percentile bootstrap of the mean
of d: `scipy.stats.bootstrap`), the t test's p-value, Holm-adjusted over the
contrasts tested together, and a verdict:
  'A > B'      Holm-adjusted p < alpha (the t interval excludes 0);
  'equivalent' the whole t interval lies within +-margin;
  'not resolved at n seeds (width w)' otherwise.
"""
import math

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
MARGIN = 0.02  # mIoU: differences this small are called equivalent


def iqm(values):
  """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end)."""
  return float(sps.trim_mean(np.asarray(values, np.float64), 0.25))


def prob_improvement(a, b):
  """P(A > B) over paired seeds: mean of 1[a_s > b_s] + 0.5 * 1[a_s == b_s]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.mean((a > b) + 0.5 * (a == b)))


def holm(pvalues):
  """Holm's step-down adjusted p-values, in the input order.

  With p sorted ascending, p_adj(i) = max_{j <= i} min(1, (m - j) * p(j)),
  j counted from 0; reject where p_adj < alpha (family-wise error <= alpha).
  """
  p = np.asarray(pvalues, np.float64)
  order = np.argsort(p, kind="stable")
  m = len(p)
  adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adjusted = np.maximum.accumulate(adjusted)
  out = np.empty(m)
  out[order] = adjusted
  return out


def contrast_values(scores, weights):
  """scores {arm: (n,) per seed}, weights {arm: w} -> (n,) d_s = sum_a w_a x[a, s]."""
  if abs(sum(weights.values())) > 1e-9:
    raise ValueError(f"contrast weights must sum to 0, got {weights}")
  missing = sorted(set(weights) - set(scores))
  if missing:
    raise ValueError(f"contrast names arms {missing} that the study has not run")
  lengths = {len(scores[a]) for a in weights}
  if len(lengths) != 1:
    raise ValueError(f"arms of a contrast have different seed counts: {lengths}")
  return sum(w * np.asarray(scores[a], np.float64) for a, w in weights.items())


def interval(d, confidence=1 - ALPHA, n_resamples=9999, seed=0):
  """Mean of d with its t and percentile-bootstrap intervals and the t test's p.

  Returns {n, mean, std, t_low, t_high, boot_low, boot_high, p}; NaNs where
  n < 2 (no spread to estimate) and for a zero spread's p.
  """
  d = np.asarray(d, np.float64)
  n, mean = len(d), float(np.mean(d))
  out = {"n": n, "mean": mean, "std": float(np.std(d, ddof=1)) if n > 1 else math.nan}
  nan = dict(t_low=math.nan, t_high=math.nan, boot_low=math.nan, boot_high=math.nan,
             p=math.nan)
  if n < 2:
    return {**out, **nan}
  if np.all(d == d[0]):  # no spread: the interval is the point, no test
    return {**out, **nan, "t_low": mean, "t_high": mean, "boot_low": mean,
            "boot_high": mean, "p": 0.0 if mean != 0 else 1.0}
  test = sps.ttest_1samp(d, 0.0)
  t_ci = test.confidence_interval(confidence)
  boot = sps.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
  return {**out, "t_low": float(t_ci.low), "t_high": float(t_ci.high),
          "boot_low": float(boot.confidence_interval.low),
          "boot_high": float(boot.confidence_interval.high), "p": float(test.pvalue)}


def verdict(row, a="A", b="B", margin=MARGIN, alpha=ALPHA):
  """The contrast's answer in words (see the module docstring)."""
  if row["p_holm"] < alpha:
    first, second = (a, b) if row["mean"] > 0 else (b, a)
    return f"{first} > {second} ({row['mean']:+.3f}, [{row['t_low']:+.3f}, {row['t_high']:+.3f}])"
  if -margin < row["t_low"] and row["t_high"] < margin:
    return f"equivalent within ±{margin} ([{row['t_low']:+.3f}, {row['t_high']:+.3f}])"
  width = row["t_high"] - row["t_low"]
  return f"not resolved at {row['n']} seeds (interval width {width:.3f})"


def compare(scores, contrasts, margin=MARGIN, alpha=ALPHA):
  """Every contrast tested together, Holm-adjusted over them.

  scores: {arm: per-seed values, seeds in the same order in every arm};
  contrasts: {name: (weights {arm: w}, 'A' label, 'B' label)}. Returns one
  row per contrast: name, a, b, the `interval` fields, P(A > B) (for a
  two-arm contrast; the share of seeds with d > 0 otherwise), p_holm, verdict.
  """
  rows = []
  for name, (weights, a, b) in contrasts.items():
    d = contrast_values(scores, weights)
    rows.append({"contrast": name, "a": a, "b": b, **interval(d),
                 "p_improvement": prob_improvement(d, np.zeros_like(d))})
  p = [r["p"] if math.isfinite(r["p"]) else 1.0 for r in rows]
  for row, adjusted in zip(rows, holm(p) if rows else []):
    row["p_holm"] = float(adjusted)
    row["verdict"] = verdict(row, row["a"], row["b"], margin, alpha)
  return rows


def pairwise(arms):
  """{f'{a} - {b}': ({a: 1, b: -1}, a, b)} for every pair of arms, in order."""
  return {f"{a} - {b}": ({a: 1.0, b: -1.0}, a, b)
          for i, a in enumerate(arms) for b in arms[i + 1:]}


def describe(values):
  """Mean, std (ddof 1), IQM, min and max of one arm's per-seed values."""
  v = np.asarray(values, np.float64)
  return {"n": len(v), "mean": float(v.mean()),
          "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
          "iqm": iqm(v), "min": float(v.min()), "max": float(v.max())}


def _kind(verdict_text):
  """A verdict's kind: 'A > B' (with its direction), 'equivalent' or 'not resolved'."""
  if verdict_text.startswith(("equivalent", "not resolved")):
    return verdict_text.split(" ")[0]
  return verdict_text.split(" (")[0]


def leave_one_out(scores, contrasts, margin=MARGIN, alpha=ALPHA):
  """{contrast: {'robust': bool, 'flips': [(seed index, verdict)]}}: the family
  compared again with each seed left out in turn (a run is left out with its
  pair: a paired difference needs both), Holm over the same family each time;
  robust when no drop changes any verdict's kind (direction, equivalence or
  unresolved)."""
  full = {r["contrast"]: _kind(r["verdict"]) for r in compare(scores, contrasts, margin, alpha)}
  n = min(len(v) for v in scores.values())
  out = {name: {"robust": True, "flips": []} for name in contrasts}
  for drop in range(n):
    kept = {arm: [v for i, v in enumerate(vals) if i != drop] for arm, vals in scores.items()}
    for row in compare(kept, contrasts, margin, alpha):
      if _kind(row["verdict"]) != full[row["contrast"]]:
        out[row["contrast"]]["robust"] = False
        out[row["contrast"]]["flips"].append((drop, row["verdict"]))
  return out


COLLAPSE_DROP = 0.15  # mIoU: a run this far below its arm's other seeds' median collapsed


def collapsed(values, drop=COLLAPSE_DROP):
  """Indices of the collapsed runs of one arm: final selection mIoU more than
  `drop` below the median of the arm's other runs (a rule fixed before the
  runs; collapsed runs stay in every analysis and are reported by name)."""
  v = np.asarray(values, np.float64)
  return [i for i in range(len(v)) if len(v) > 2 and v[i] < np.median(np.delete(v, i)) - drop]


def seeds_needed(d, alpha=ALPHA, power=0.8, family=1):
  """Paired seeds for a two-sided t test at alpha / family (Holm's first step) to
  detect the observed mean of d with the observed spread at `power` (normal
  approximation plus one; inf when the mean is 0)."""
  d = np.asarray(d, np.float64)
  mean, std = abs(float(np.mean(d))), float(np.std(d, ddof=1))
  if mean == 0:
    return math.inf
  z = sps.norm.ppf(1 - alpha / family / 2) + sps.norm.ppf(power)
  return int(math.ceil((z * std / mean) ** 2)) + 1
