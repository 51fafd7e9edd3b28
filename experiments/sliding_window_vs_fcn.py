"""Sliding-window patch classification vs its convolutionalized FCN twin.

    python experiments/sliding_window_vs_fcn.py [--sizes=64,128] [--patch=31] [--json] \
        [--out=experiments/results/sliding_window]

Classifies every pixel of an image twice with the same weights: (a) a patch
classifier applied to the zero-padded patch around each pixel (batched, so
the comparison is fair to it), (b) the convolutionalized network applied once
to the whole image. Checks the scores are identical (exits non-zero if not)
and, at each image size, prints the FLOPs and bytes accessed of both compiled
paths (XLA's cost analysis) and their measured times: the FCN computes each
shared conv feature once instead of once per window. Saves the bars to
OUT/sliding_window_vs_fcn.png and the rows to OUT/results.json.
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from fcnjax import models

TOLERANCE = 1e-4


def timed(fn, *args, repeats=3):
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best, out


def cost(fn, *args):
  """XLA's cost analysis of jit(fn)(*args): {'flops', 'bytes accessed'} (floats)."""
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # one dict per computation in older versions
    analysis = analysis[0]
  return {key: float(analysis[key]) for key in ("flops", "bytes accessed")}


def make_paths(classes, patch, widths=(16, 32), hidden=64, seed=0):
  """The two per-pixel classifiers and their parameters.

  Returns (sliding, fcn, params, fcn_params); sliding(params, img) and
  fcn(fcn_params, img) both map an (N, H, W, 3) image to (N, H, W, classes) scores.
  """
  clf = models.PatchClassifier(classes, patch, widths, hidden)
  twin = models.ConvolutionalPatchClassifier(classes, patch, widths, hidden)
  params = clf.init(jax.random.key(seed), jnp.zeros((1, patch, patch, 3)))["params"]

  def sliding(p, img):
    patches = models.extract_patches(img, patch)
    return clf.apply({"params": p}, patches).reshape(img.shape[:3] + (classes,))

  def fcn(p, img):
    return twin.apply({"params": p}, img)

  return sliding, fcn, params, models.convolutionalize(params, patch, widths)


def random_image(size, seed=0):
  """(1, size, size, 3) float32 normal noise."""
  return jnp.asarray(np.random.default_rng(seed).normal(size=(1, size, size, 3)), jnp.float32)


def path_costs(size, classes, patch, widths=(16, 32), hidden=64):
  """{'sliding': cost, 'fcn': cost} on a size x size image (compiled, not run)."""
  sliding, fcn, params, fcn_params = make_paths(classes, patch, widths, hidden)
  image = random_image(size)
  return {"sliding": cost(sliding, params, image), "fcn": cost(fcn, fcn_params, image)}


def compare(size, classes, patch, widths=(16, 32), hidden=64, repeats=3):
  """Runs both paths on one size x size image; returns one row of results."""
  sliding, fcn, params, fcn_params = make_paths(classes, patch, widths, hidden)
  image = random_image(size)
  costs = {"sliding": cost(sliding, params, image), "fcn": cost(fcn, fcn_params, image)}
  t_window, scores_window = timed(jax.jit(sliding), params, image, repeats=repeats)
  t_fcn, scores_fcn = timed(jax.jit(fcn), fcn_params, image, repeats=repeats)
  sw, fc = costs["sliding"], costs["fcn"]
  return dict(name="sliding_window_vs_fcn", image=f"{size}x{size}", size=size, patch=patch,
              sliding_flops=sw["flops"], fcn_flops=fc["flops"],
              flops_ratio=sw["flops"] / fc["flops"],
              sliding_bytes=sw["bytes accessed"], fcn_bytes=fc["bytes accessed"],
              bytes_ratio=sw["bytes accessed"] / fc["bytes accessed"],
              sliding_window_s=t_window, fcn_s=t_fcn, speedup=t_window / t_fcn,
              max_abs_diff=float(jnp.abs(scores_window - scores_fcn).max()),
              same_argmax=bool((scores_window.argmax(-1) == scores_fcn.argmax(-1)).all()))


def format_table(rows):
  """The rows as a text table: GFLOPs, MB accessed and ms per path, with ratios."""
  lines = [f"{'image':>7} | {'GFLOP slide':>11} {'FCN':>7} {'ratio':>6} | "
           f"{'MB slide':>9} {'FCN':>7} {'ratio':>6} | {'ms slide':>8} {'FCN':>7} "
           f"{'ratio':>6} | {'max|diff|':>9} argmax"]
  for r in rows:
    lines.append(
        f"{r['image']:>7} | {r['sliding_flops'] / 1e9:>11.2f} {r['fcn_flops'] / 1e9:>7.2f} "
        f"{r['flops_ratio']:>5.2f}x | {r['sliding_bytes'] / 1e6:>9.1f} "
        f"{r['fcn_bytes'] / 1e6:>7.1f} {r['bytes_ratio']:>5.1f}x | "
        f"{r['sliding_window_s'] * 1e3:>8.1f} {r['fcn_s'] * 1e3:>7.1f} {r['speedup']:>5.1f}x | "
        f"{r['max_abs_diff']:>9.1e} {'same' if r['same_argmax'] else 'DIFFERENT'}")
  return "\n".join(lines)


def plot(rows, path):
  """Log-scale bars of FLOPs, bytes accessed and time, both paths per size."""
  panels = [("FLOPs", "sliding_flops", "fcn_flops", "flops_ratio"),
            ("bytes accessed", "sliding_bytes", "fcn_bytes", "bytes_ratio"),
            ("time (s)", "sliding_window_s", "fcn_s", "speedup")]
  fig, axes = plt.subplots(1, 3, figsize=(13, 4))
  pos = np.arange(len(rows))
  for ax, (title, slide, fcn, ratio) in zip(axes, panels):
    ax.bar(pos - 0.2, [r[slide] for r in rows], 0.4, label="sliding window")
    ax.bar(pos + 0.2, [r[fcn] for r in rows], 0.4, label="FCN (one pass)")
    for i, r in enumerate(rows):
      ax.text(i, r[slide] * 1.3, f"{r[ratio]:.1f}x", ha="center")
    values = [r[k] for r in rows for k in (slide, fcn)]
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 10, max(values) * 10)  # bars start well below the smallest
    ax.set_xticks(pos, [r["image"] for r in rows])
    ax.set_title(title)
  axes[0].legend(loc="upper left")
  fig.suptitle(f"{rows[0]['patch']}x{rows[0]['patch']} patch classifier at every pixel")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--sizes", default="64,128", help="comma-separated image sizes")
  parser.add_argument("--patch", type=int, default=31)
  parser.add_argument("--classes", type=int, default=7)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", action="store_true")
  parser.add_argument("--out", default="experiments/results/sliding_window")
  args = parser.parse_args()
  rows = [compare(int(s), args.classes, args.patch, repeats=args.repeats)
          for s in args.sizes.split(",")]
  os.makedirs(args.out, exist_ok=True)
  plot(rows, os.path.join(args.out, "sliding_window_vs_fcn.png"))
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(rows, f, indent=1)
  if args.json:
    for row in rows:
      print(json.dumps(row))
  else:
    print(f"{args.patch}x{args.patch} patches, {args.classes} classes; ratio = sliding / FCN")
    print(format_table(rows))
  if any(r["max_abs_diff"] > TOLERANCE or not r["same_argmax"] for r in rows):
    sys.exit("sliding-window and FCN scores differ")


if __name__ == "__main__":
  main()
