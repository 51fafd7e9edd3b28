"""Are two trained runs the same bit for bit? (A study's run retrained at another commit.)

    python experiments/same_run.py /root/study/operators/nearest,seed=0 /tmp/check/nearest,seed=0

Compares the two run folders' final checkpoints (`same_numbers.checkpoint_hash`:
params and batch stats), their scores.json (every metric both record, exactly;
the cache key, which names the code, printed beside; a metric only one side
records, e.g. one a later commit added, is listed, not compared)
and history.json (every logged curve, exactly); prints each and exits 1 when
anything differs.
"""
import json
import os
import sys

from same_numbers import checkpoint_hash


def final_step(run_dir):
  steps = [int(d) for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit()]
  if not steps:
    raise SystemExit(f"error: no checkpoint in {run_dir}/checkpoints")
  return max(steps)


def load(run_dir, name):
  path = os.path.join(run_dir, name)
  if not os.path.exists(path):
    raise SystemExit(f"error: {path} does not exist")
  with open(path) as f:
    return json.load(f)


def leaves(tree, prefix=""):
  """{'test/mean_iou': value, ...}: a json tree's leaves by path (lists are leaves)."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  return {k: v for name, sub in tree.items() for k, v in leaves(sub, f"{prefix}/{name}"
                                                               if prefix else name).items()}


def main(a, b):
  same = True
  step_a, step_b = final_step(a), final_step(b)
  hashes = checkpoint_hash(a, step_a), checkpoint_hash(b, step_b)
  print(f"final checkpoints: step {step_a} {hashes[0]} | step {step_b} {hashes[1]}")
  same &= step_a == step_b and hashes[0] == hashes[1]
  for name in ("scores.json", "history.json"):
    x, y = load(a, name), load(b, name)
    if "key" in x or "key" in y:  # what the cache keys on (the code's hash): expected to differ
      print(f"{name} keys: {x.pop('key', None)} | {y.pop('key', None)}")
    x, y = leaves(x), leaves(y)
    differ = sorted(k for k in set(x) & set(y) if x[k] != y[k])
    print(f"{name}: " + (f"identical ({len(set(x) & set(y))} entries)" if not differ
                         else f"differ in {differ}"))
    for side, only in (("first", set(x) - set(y)), ("second", set(y) - set(x))):
      if only:
        print(f"{name}: only the {side} run records {sorted(only)} (not compared)")
    same &= not differ
  print("same run, bit for bit" if same else "DIFFERENT")
  return 0 if same else 1


if __name__ == "__main__":
  if len(sys.argv) != 3:
    raise SystemExit(__doc__)
  sys.exit(main(*sys.argv[1:]))
