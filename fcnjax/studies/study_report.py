"""What a study writes: results.json, results.md (tables) and the figures.

results.md: the costs-and-scores table in the form of SegNet's Table 1
(TPAMI 2017), per-seed test mIoU with mean ± std and IQM, the pre-registered
contrasts and every pair of arms (paired differences, 95 % t and bootstrap
intervals, P(A > B), Holm-adjusted p, verdict). Figures: ablation.png (test
scores, std over seeds), forest.png (the intervals), curves.png (selection
mIoU and train loss, mean over seeds in a min-max band), predictions.png
(the same test images segmented by every arm, first seed).
"""
import json
import math
import os

import jax
import numpy as np

from fcnjax import stats, viz
from fcnjax.data import pipeline
from fcnjax.inference import restore
from fcnjax.studies import experiment
from fcnjax.train import step as step_lib

PROTOCOL = (
    "Splits: train / selection (the curves, the budget) / test (scored once per run, "
    "nothing chosen on it). Budget fixed in advance by a pilot on the selection split; "
    "'gain last 20 %' is each arm's largest selection-mIoU gain over a run's last 20 % "
    "of steps. Scoring: the final weights (step = budget), fresh or resumed. Seeds "
    "paired across arms (same data order; same init where shapes allow). Contrasts: "
    "mean paired difference of test mIoU, 95 % t and percentile-bootstrap intervals, "
    "Holm-adjusted over the contrasts of a table; 'equivalent' = the t interval within "
    f"±{stats.MARGIN}.")


def _pm(d, digits=3):
  return f"{d['mean']:.{digits}f}" if math.isnan(d["std"]) else \
      f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def costs_table(results):
  """SegNet-Table-1 form: costs, then G / C / mIoU / BF / BIoU on each scored split."""
  rows = []
  for arm, s in results["summary"].items():
    c = results["costs"][arm]
    row = {"arm": arm, "params": f"{c['params']:,}", "kept bytes/img": f"{c['kept_bytes']:,}",
           "storage x": f"{c['storage_multiplier']:.2f}",
           "infer ms/img": f"{c['infer_ms']:.2f}", "train step ms": f"{c['step_ms']:.0f}"}
    for split in (k for k in s if isinstance(s[k], dict) and "mean_iou" in s[k]):
      for m, short in (("pixel_acc", "G"), ("mean_acc", "C"), ("mean_iou", "mIoU"),
                       ("bf", "BF"), ("boundary_iou", "BIoU")):
        row[f"{split} {short}"] = (_pm(s[split][m]) if m == "mean_iou"
                                   else f"{s[split][m]['mean']:.3f}")
    rows.append(row)
  return viz.markdown_table(rows, list(rows[0]))


def seeds_table(results):
  rows = []
  for arm, s in results["summary"].items():
    d = s["test"]["mean_iou"]
    per_seed = [r["scores"]["test"]["mean_iou"] for r in
                sorted((r for r in results["runs"] if r["arm"] == arm), key=lambda r: r["seed"])]
    rows.append({"arm": arm, "n": d["n"], "test mIoU": _pm(d, 4), "IQM": f"{d['iqm']:.4f}",
                 "per seed": " / ".join(f"{v:.3f}" for v in per_seed),
                 "gain last 20 %": f"{s['plateau_gain_max']:+.3f}"})
  return viz.markdown_table(rows, list(rows[0]))


def contrast_table(rows, robustness=None, seeds_needed=None):
  """One row per contrast; with `robustness` ({name: {robust, flips}}) whether its
  verdict survives leaving out each seed, with `seeds_needed` the power estimate."""
  if not rows:
    return "(none: no contrast has all its arms in this study)"
  out = []
  for r in rows:
    row = {"contrast": r["contrast"], "mean diff": f"{r['mean']:+.4f}",
           "95 % t": f"[{r['t_low']:+.3f}, {r['t_high']:+.3f}]",
           "95 % bootstrap": f"[{r['boot_low']:+.3f}, {r['boot_high']:+.3f}]",
           "P(A>B)": f"{r['p_improvement']:.2f}", "p (Holm)": f"{r['p_holm']:.3g}",
           "answer": r["verdict"]}
    if robustness:
      rob = robustness[r["contrast"]]
      row["leave one seed out"] = "robust" if rob["robust"] else "fragile (without seed #{})".format(
          ", ".join(str(i) for i, _ in rob["flips"]))
    if seeds_needed:
      row["seeds for 80 % power"] = str(seeds_needed[r["contrast"]])
    out.append(row)
  return viz.markdown_table(out, list(out[0]))


def markdown(results):
  p = results["provenance"]
  cached = sum(bool(r.get("cached")) for r in results["runs"])
  note = f" ({cached} of them trained and scored before, read back)" if cached else ""
  return "\n\n".join([
      f"Commit {p['commit'][:12]}, {p['devices']} ({p['processor']}, {p['cpus']} cores), "
      f"jax {p['jax']}, flax {p['flax']}; wall time {results['wall_s'] / 60:.1f} min "
      f"for {len(results['runs'])} runs{note}; seeds {results['seeds']}.",
      "Protocol: " + PROTOCOL,
      costs_table(results), seeds_table(results),
      "Pre-registered contrasts (test mIoU, A - B):",
      contrast_table(results["contrasts"], results.get("robustness"),
                     results.get("seeds_needed")),
      *[f"Secondary endpoint, test {m} (its own Holm family):\n\n" + contrast_table(rows)
        for m, rows in results.get("secondary", {}).items()],
      "Collapsed runs (final selection mIoU more than 0.15 below the median of the arm's "
      "other seeds; kept in every analysis): " + (", ".join(
          f"{arm}: {names} ({len(names)} of {len(results['seeds'])})"
          for arm, names in results.get("collapsed", {}).items() if names) or "none"),
      *([("Declared: " + "; ".join(f"{k}: {v}" for k, v in results["declared"].items()))]
        if results.get("declared") else []),
      "Every pair of arms (Holm over all pairs):", contrast_table(results["pairwise"])])


def curves_by_arm(runs, names=("eval_mean_iou", "train_loss")):
  out = {n: {} for n in names}
  for run in runs:
    for n in names:
      if run["curves"].get(n):
        out[n].setdefault(run["arm"], {})[run["seed"]] = run["curves"][n]
  return {("selection mIoU" if n == "eval_mean_iou" else n): v for n, v in out.items()}


def forest_rows(results):
  return [{"contrast": r["contrast"], "mean": r["mean"], "low": r["t_low"],
           "high": r["t_high"], "resolved": r["p_holm"] < stats.ALPHA}
          for r in results["contrasts"] + results["pairwise"]]


def predictions(config, workdir, results, num_images=4):
  """Test images, labels and {arm: preds} of every arm's first seed."""
  data = experiment.with_fields(config, {"data.eval_split": "test"}).data
  batch = next(iter(pipeline.eval_batches(data, num_images)))
  first = results["seeds"][0]
  preds, info = {}, None
  for run in results["runs"]:
    if run["seed"] == first:
      cfg = experiment.with_fields(config, {**run["fields"], "seed": first})
      state, info = restore(cfg, os.path.join(workdir, run["name"]), which="latest")
      preds[run["arm"]] = np.asarray(jax.jit(step_lib.predict_step)(state, batch["image"])[0])
  return pipeline.denormalize(batch["image"], config.data.normalization), batch["label"], \
      preds, info


def write(workdir, config, results, log=print):
  """results.json, results.md and the four figures in WORKDIR."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  table = markdown(results)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  log(table)
  bars = [{"arm": arm, "metric": f"test {m}", "value": s["test"][m]["mean"],
           "err": s["test"][m]["std"]} for arm, s in results["summary"].items()
          for m in ("mean_iou", "bf", "boundary_iou")]
  viz.plot_ablation(os.path.join(workdir, "ablation.png"), bars, metric="value",
                    group="metric", label="arm", error="err")
  viz.plot_forest(os.path.join(workdir, "forest.png"), forest_rows(results),
                  margin=stats.MARGIN, xlabel="paired difference of test mIoU (95 % t)")
  viz.plot_seed_curves(os.path.join(workdir, "curves.png"), curves_by_arm(results["runs"]))
  images, labels, preds, info = predictions(config, workdir, results)
  viz.save_prediction_grid(os.path.join(workdir, "predictions.png"), images, labels, preds,
                           info.palette, class_names=info.class_names)
