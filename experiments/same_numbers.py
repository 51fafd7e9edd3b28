"""Does this checkout compute the same numbers as COMMIT? A few steps of one arm at both.

    python experiments/same_numbers.py 982684f fcnjax.studies.operators model.upsample=carafe
    python experiments/same_numbers.py 61b8014 skip_study model.name=segnet model.depth=4

Trains CONFIG (a module with get_config(); a bare name is fcnjax.configs.NAME) with the
fields given, for --steps steps (2 warm-up steps, logging every step), once with the fcnjax of
a worktree of COMMIT and once with this checkout's, each in its own process on one core
(`taskset -c --core`), and prints for each the SHA-256 of the final params and batch stats
(float leaves in path order) and the last losses; exit 1 when they differ. A study's runs
stay valid for code whose numbers are the same (bit for bit, on the same CPU and core count).
"""
import argparse
import ast
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import orbax.checkpoint as ocp

from fcnjax.train import loop  # in the child, the fcnjax first on PYTHONPATH: COMMIT's or this one

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_and_hash(module, workdir, fields, steps):
  """In the child: trains and returns (hash, last losses) of the final checkpoint."""
  config = importlib.import_module(module if "." in module else
                                   f"fcnjax.configs.{module}").get_config()
  for item in [f"num_train_steps={steps}", "log_every_steps=1", f"eval_every_steps={steps}",
               f"checkpoint_every_steps={steps}", "optimizer.warmup_steps=2", *fields]:
    key, value = item.split("=", 1)
    *path, last = key.split(".")
    node = config
    for name in path:
      node = node[name]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass  # a string
    node[last] = float(value) if isinstance(node.get(last), float) else value
  loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "history.json")) as f:
    losses = [round(float(v), 6) for _, v in json.load(f)["train_loss"]][-3:]
  return checkpoint_hash(workdir, steps), losses


def checkpoint_hash(workdir, step):
  """SHA-256 (16 hex digits) of WORKDIR's checkpoint at `step`: its params and
  batch stats, float leaves in path order (the optimizer state left out)."""
  saved = os.path.join(workdir, "checkpoints", str(step))
  saved = os.path.join(saved, "default") if os.path.isdir(os.path.join(saved, "default")) else saved
  tree = ocp.PyTreeCheckpointer().restore(saved)
  digest = hashlib.sha256()

  def walk(path, node):
    if isinstance(node, dict):
      for k in sorted(node):
        walk(f"{path}/{k}", node[k])
    elif (("params" in path or "batch_stats" in path) and "opt" not in path
          and np.asarray(node).dtype.kind == "f"):
      digest.update(np.ascontiguousarray(node).tobytes())
  walk("", tree)
  return digest.hexdigest()[:16]


def run(tree, args, scratch):
  """Runs the child with `tree`'s fcnjax first on the path; returns its JSON line."""
  workdir = tempfile.mkdtemp(dir=scratch)
  env = {**os.environ, "PYTHONPATH": tree}
  command = ["taskset", "-c", str(args.core), sys.executable, os.path.abspath(__file__),
             "--child", workdir, args.commit, args.config, *args.fields, f"--steps={args.steps}"]
  out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=scratch)
  lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
  if out.returncode or not lines:
    raise SystemExit(f"error: the run with {tree} failed:\n{out.stderr[-3000:]}")
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("commit")
  parser.add_argument("config")
  parser.add_argument("fields", nargs="*", help="dotted.field=value")
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--core", type=int, default=0)
  parser.add_argument("--child", metavar="WORKDIR")
  args = parser.parse_args()
  if args.child:
    digest, losses = train_and_hash(args.config, args.child, args.fields, args.steps)
    print(json.dumps({"hash": digest, "losses": losses}))
    return
  scratch = tempfile.mkdtemp(prefix="same_numbers-")
  pinned = os.path.join(scratch, "tree")
  subprocess.run(["git", "-C", HERE, "worktree", "add", "--detach", "-q", pinned, args.commit],
                 check=True)
  try:
    there, here = run(pinned, args, scratch), run(HERE, args, scratch)
  finally:
    subprocess.run(["git", "-C", HERE, "worktree", "remove", "--force", pinned], check=False)
  print(f"{args.config} {' '.join(args.fields)}, {args.steps} steps, core {args.core}:")
  print(f"  {args.commit}: {there['hash']} losses {there['losses']}")
  print(f"  this checkout: {here['hash']} losses {here['losses']}")
  same = there == here
  print("  same numbers" if same else "  DIFFERENT")
  sys.exit(0 if same else 1)


if __name__ == "__main__":
  main()
