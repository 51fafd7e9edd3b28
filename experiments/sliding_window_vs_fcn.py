"""Sliding-window patch classification vs its convolutionalized FCN twin.

    python experiments/sliding_window_vs_fcn.py [--size=64] [--patch=31] [--json]

Classifies every pixel of an image twice with the same weights: (a) a patch
classifier applied to the zero-padded patch around each pixel (batched, so
the comparison is fair to it), (b) the convolutionalized network applied once
to the whole image. Checks the scores are identical and prints the speed-up:
the FCN computes each shared conv feature once instead of once per window.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from fcnjax import models


def timed(fn, *args, repeats=3):
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best, out


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--patch", type=int, default=31)
  parser.add_argument("--classes", type=int, default=7)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  widths, hidden = (16, 32), 64
  clf = models.PatchClassifier(args.classes, args.patch, widths, hidden)
  twin = models.ConvolutionalPatchClassifier(args.classes, args.patch, widths, hidden)
  params = clf.init(jax.random.key(0), jnp.zeros((1, args.patch, args.patch, 3)))["params"]
  image = jnp.asarray(np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)),
                      jnp.float32)

  @jax.jit
  def sliding(p, img):
    patches = models.extract_patches(img, args.patch)
    return clf.apply({"params": p}, patches).reshape(img.shape[:3] + (args.classes,))

  fcn = jax.jit(lambda p, img: twin.apply({"params": p}, img))
  t_window, scores_window = timed(sliding, params, image)
  t_fcn, scores_fcn = timed(fcn, models.convolutionalize(params, args.patch, widths), image)
  row = dict(name="sliding_window_vs_fcn", image=f"{args.size}x{args.size}", patch=args.patch,
             sliding_window_s=t_window, fcn_s=t_fcn, speedup=t_window / t_fcn,
             max_abs_diff=float(jnp.abs(scores_window - scores_fcn).max()),
             same_argmax=bool((scores_window.argmax(-1) == scores_fcn.argmax(-1)).all()))
  if args.json:
    print(json.dumps(row))
  else:
    print(f"{args.size}x{args.size} image, {args.patch}x{args.patch} patches: sliding window "
          f"{t_window * 1e3:.1f} ms, FCN {t_fcn * 1e3:.1f} ms -> {row['speedup']:.0f}x faster; "
          f"max |diff| {row['max_abs_diff']:.1e}, same argmax everywhere: {row['same_argmax']}")


if __name__ == "__main__":
  main()
