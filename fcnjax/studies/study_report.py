"""What a study writes: results.json, results.md (tables) and the figures.

results.md: the costs-and-scores table in the form of SegNet's Table 1
(TPAMI 2017), per-seed test mIoU with mean ± std and IQM, the pre-registered
contrasts and every pair of arms (paired differences, 95 % t and bootstrap
intervals, P(A > B), Holm-adjusted p, verdict). Figures: ablation.png (test
scores, std over seeds), forest.png (the intervals), curves.png (selection
mIoU and train loss, mean over seeds in a min-max band), predictions.png
(the same test images segmented by every arm, first seed), learned.png (what
the learned operators predicted on one test image, or their kernels).
"""
import json
import math
import os

import jax
import numpy as np

from fcnjax import models, stats, viz
from fcnjax.data import pipeline
from fcnjax.inference import restore
from fcnjax.models.operator import INTERNALS
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
  """SegNet-Table-1 form: costs (and the published figure where the study quotes
  one), then G / C / mIoU / BF / BIoU on each scored split."""
  rows = []
  for arm, s in results["summary"].items():
    c = results["costs"][arm]
    row = {"arm": arm, "params": f"{c['params']:,}",
           "GFLOP/img": f"{c['gflops']:.3f}" if "gflops" in c else "",
           "kept bytes/img": f"{c['kept_bytes']:,}",
           "storage x": f"{c['storage_multiplier']:.2f}",
           "infer ms/img": f"{c['infer_ms']:.2f}", "train step ms": f"{c['step_ms']:.0f}"}
    if results.get("published"):
      row["published"] = results["published"].get(arm, "")
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


def collapse_table(results):
  """Per arm: its collapsed runs (`study.collapses`) out of its seeds, and their names."""
  rows = []
  for arm, names in results.get("collapsed", {}).items():
    n = sum(r["arm"] == arm for r in results["runs"])
    rows.append({"arm": arm, "collapsed": f"{len(names)} of {n}",
                 "runs": ", ".join(names) or "-"})
  return viz.markdown_table(rows, ["arm", "collapsed", "runs"]) if rows else "(not computed)"


def compute(results):
  """The study's cost in words: runs, training wall time summed over them (from
  their event files; vmapped seeds split their program's), core-hours, and the
  machines each seed ran on."""
  runs = results["runs"]

  def wall_s(run):  # vmapped seeds share one program's wall
    together = run.get("trained_as") or ""
    share = len(together.split("[", 1)[1].split(",")) if together.startswith("vmapped") else 1
    return (run.get("logged_wall_s") or 0.0) / share

  wall = sum(wall_s(r) for r in runs)
  cores = sum(wall_s(r) * ((r.get("provenance") or {}).get("cpus_used") or 1) for r in runs)
  machines = {}
  for r in runs:
    p = r.get("provenance") or {}
    machine = f"{p.get('cpu')}, {p.get('cpus_used')} core(s) per run, jax {p.get('jax')}"
    machines.setdefault(machine, set()).add(r["seed"])
  return (f"Compute: {len(runs)} runs, {wall / 3600:.1f} h of training wall time summed over "
          f"runs ({cores / 3600:.1f} core-hours); machines: " + "; ".join(
              f"{m} (seeds {sorted(s)})" for m, s in machines.items()) + ".")


def markdown(results):
  p = results["provenance"]
  cached = sum(bool(r.get("cached")) for r in results["runs"])
  note = f" ({cached} of them trained and scored before, read back)" if cached else ""
  return "\n\n".join([
      f"Commit {p['commit'][:12]}"
      + (f" (tables written at {p['reported_at'][:12]})" if p.get("reported_at") else "")
      + f", {p['devices']} ({p['processor']}, {p['cpus']} cores), "
      f"jax {p['jax']}, flax {p['flax']}; wall time {results['wall_s'] / 60:.1f} min "
      f"for {len(results['runs'])} runs{note}; seeds {results['seeds']}.",
      "Protocol: " + PROTOCOL, compute(results),
      costs_table(results), seeds_table(results),
      *([f"Budget (flat: the median seed's selection-mIoU gain over the last 20 % of steps "
         f"< 0.01; the worst seed's gain beside it):\n\n" + viz.markdown_table(
             results["flatness"], list(results["flatness"][0]))] if results.get("flatness") else []),
      "Pre-registered contrasts (test mIoU, A - B):",
      contrast_table(results["contrasts"], results.get("robustness"),
                     results.get("seeds_needed")),
      *[f"Secondary endpoint, test {m} (its own Holm family):\n\n" + contrast_table(rows)
        for m, rows in results.get("secondary", {}).items()],
      "Collapsed runs (final selection mIoU more than 0.15 below the median of the arm's "
      "other seeds; kept in every analysis), the collapse rate per arm:",
      collapse_table(results),
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


def plot_selection_curves(path, rows, fraction=0.2):
  """The budget pilot's figure: one panel per arm, one selection-mIoU curve per
  seed of `rows` (`status`'s, or `pilot`'s: 'arm', 'seed', 'steps', 'curve'), the
  last `fraction` of each arm's budget shaded (the window the flatness rule
  reads). False when no row has a curve yet."""
  curves, budgets = {}, {}
  for row in rows:
    if row.get("curve"):
      curves.setdefault(row["arm"], {})[f"seed {row['seed']}"] = row["curve"]
      budgets[row["arm"]] = max(budgets.get(row["arm"], 0), row["steps"])
  if curves:
    viz.plot_curves(path, curves, shade={arm: ((1 - fraction) * steps, steps)
                                         for arm, steps in budgets.items()})
  return bool(curves)


def forest_rows(results):
  return [{"contrast": r["contrast"], "mean": r["mean"], "low": r["t_low"],
           "high": r["t_high"], "resolved": r["p_holm"] < stats.ALPHA}
          for r in results["contrasts"] + results["pairwise"]]


def figure_seed(workdir, results):
  """The first seed whose every run has its final weights in WORKDIR
  (checkpoints/<scored step>), or None. The figures of what the arms predict
  and learned need them; runs read back from copied records have none."""
  for seed in results["seeds"]:
    runs = [r for r in results["runs"] if r["seed"] == seed]
    if runs and all(os.path.isdir(os.path.join(workdir, r["name"], "checkpoints",
                                               str(r["scores"]["step"]))) for r in runs):
      return seed
  return None


def predictions(config, workdir, results, first, num_images=4):
  """Test images, labels and {arm: preds} of every arm's seed `first`."""
  data = experiment.with_fields(config, {"data.eval_split": "test"}).data
  batch = next(iter(pipeline.eval_batches(data, num_images)))
  preds, info = {}, None
  for run in results["runs"]:
    if run["seed"] == first:
      cfg = experiment.with_fields(config, {**run["fields"], "seed": first})
      state, info = restore(cfg, os.path.join(workdir, run["name"]), which="latest")
      preds[run["arm"]] = np.asarray(jax.jit(step_lib.predict_step)(state, batch["image"])[0])
  return pipeline.denormalize(batch["image"], config.data.normalization), batch["label"], \
      preds, info


def kernel_entropy(kernels):
  """Normalised entropy over the taps of (..., K) kernels summing to 1 on the last
  axis: 1 = uniform (a plain average), 0 = one tap (a copy)."""
  p = np.asarray(kernels, np.float64)
  return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1) / np.log(p.shape[-1])


def internal_panels(sown):
  """What an operator learned, as [(title, 2-D array)] in the order sown, stage by
  stage, for the first image: kernels (their `kernel_entropy` map), FADE's gate (1:
  the encoder map), DySample's offsets (mean length in source pixels), a transpose
  conv's kernel (the mean of its channel diagonal, k x k; the title gives the
  off-diagonal share of its squared weight), IndexNet's decoder index (mean over
  channels). sown: {'internals': ..., 'intermediates': ...} of `model.apply(...,
  mutable=...)`; switches (not learned) are left out."""
  panels = []
  for collection in (INTERNALS, "intermediates"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(sown.get(collection, {}))[0]:
      names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
      module = "/".join(str(n) for n in names[:-2] if n is not None)
      name, v = names[-2], np.asarray(leaf, np.float64)
      if name == "kernels":
        panels.append((f"{module} kernel entropy", kernel_entropy(v[0])))
      elif name == "gate_map":
        panels.append((f"{module} gate", v[0].mean(-1)))
      elif name == "offsets":  # (N, h, w, 2, g, f, f)
        panels.append((f"{module} |offset| (px)", np.hypot(v[0, :, :, 0], v[0, :, :, 1])
                       .mean(axis=(-3, -2, -1))))
      elif name == "transpose_kernel":  # (k, k, C, C)
        diagonal = np.einsum("hwcc->hwc", v)
        share = 1 - (diagonal ** 2).sum() / (v ** 2).sum()
        panels.append((f"{module} kernel, off-diagonal {share:.0%}", diagonal.mean(-1)))
      elif str(name).startswith("index"):
        panels.append((f"{module} {name}", v[0].mean(-1)))
  return panels


def learned_internals(config, workdir, results, first):
  """(first test image, {arm: `internal_panels`}) of every arm with a learned
  operator that sows what it learned, from its seed `first`'s final weights."""
  data = experiment.with_fields(config, {"data.eval_split": "test"}).data
  image = next(iter(pipeline.eval_batches(data, 1)))["image"]
  rows = {}
  for run in results["runs"]:
    cfg = experiment.with_fields(config, {**run["fields"], "seed": first})
    operator = cfg.model.get("upsample")
    if run["seed"] != first or not operator or not models.resolve(operator).learned:
      continue
    state, _ = restore(cfg, os.path.join(workdir, run["name"]), which="latest")
    apply = jax.jit(lambda variables, x, f=state.apply_fn: f(
        variables, x, train=False, mutable=[INTERNALS, "intermediates"]))
    _, sown = apply({"params": state.params, "batch_stats": state.batch_stats}, image)
    panels = internal_panels(sown)
    if panels:
      rows[run["arm"]] = panels
  return pipeline.denormalize(image, config.data.normalization)[0], rows


def write(workdir, config, results, log=print):
  """results.json, results.md and the figures in WORKDIR (predictions.png and
  learned.png from `figure_seed`'s weights, left out with a message without them)."""
  os.makedirs(workdir, exist_ok=True)
  results["figure_seed"] = seed = figure_seed(workdir, results)
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
  if seed is None:
    log("predictions.png, learned.png: no seed has every arm's final weights in "
        f"{workdir} (runs read back from records): retrain one seed to draw them")
    return
  log(f"predictions.png, learned.png: seed {seed}")
  images, labels, preds, info = predictions(config, workdir, results, seed)
  viz.save_prediction_grid(os.path.join(workdir, "predictions.png"), images, labels, preds,
                           info.palette, class_names=info.class_names)
  image, internals = learned_internals(config, workdir, results, seed)
  if internals:
    viz.plot_internals(os.path.join(workdir, "learned.png"), image, internals)
