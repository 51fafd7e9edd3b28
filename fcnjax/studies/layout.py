"""Where a study's runs execute on a CPU machine: seeds side by side, one core each.

Measured on a 2-core machine with the study decoder (issue notes, README
"Running a study"): two runs at once pinned to one core each give ~1.24x the
throughput of one run using both cores, and the core count a run uses changes
its numbers (XLA:CPU splits work by its thread count), so a run's core count
is part of the protocol: every layout here pins each run to one core.

* `side_by_side` (the default on CPU with >= 2 cores): one process per core,
  each taking the next seed left and training every arm of it
  (`fcnjax-study NAME --seeds=S --layout=in_process`, pinned with `os.sched_setaffinity`); the
  calling process waits, then reads every run back for the tables.
* `one_core`: the same, one process on the last core: the other cores stay
  free (tests or development beside a long study, at a predictable speed).
* `in_process`: every run in this process, one after another, on whatever
  cores it has (accelerators, vmapped seeds, and the layout before pinning).

A seed's runs all run in one process on one core: a paired difference never
straddles two machines or two core counts.
"""
import os
import subprocess
import sys
import time

import fcnjax

LAYOUTS = ("auto", "side_by_side", "one_core", "in_process")


def resolve(layout, platform, cores=None):
  """The layout `auto` means here: side_by_side on a CPU with >= 2 cores,
  else in_process."""
  cores = len(os.sched_getaffinity(0)) if cores is None else cores
  if layout not in LAYOUTS:
    raise ValueError(f"--layout={layout}: valid: {', '.join(LAYOUTS)}")
  if layout == "auto":
    return "side_by_side" if platform == "cpu" and cores >= 2 else "in_process"
  return layout


def cores_for(layout, available=None):
  """The cores the layout's processes are pinned to, one process per core."""
  available = sorted(os.sched_getaffinity(0) if available is None else available)
  return available[-1:] if layout == "one_core" else available


def seed_command(argv, seed, module):
  """`argv` (this command line) for one seed, trained in process: --seeds and
  --layout replaced; run as `python -m module`."""
  drop, kept, args = ("--seeds", "--layout"), [], iter(argv[1:])
  for arg in args:
    if arg in drop:
      next(args, None)  # '--seeds 0,1': its value too
    elif not arg.startswith(tuple(d + "=" for d in drop)):
      kept.append(arg)
  return [sys.executable, "-m", module, *kept, f"--seeds={seed}", "--layout=in_process"]


def package_env(environ=None):
  """The environment of a seed process: the folder this process imported
  fcnjax from first on PYTHONPATH, and the working folder not on sys.path
  (PYTHONSAFEPATH, Python >= 3.11), so a seed runs the same code and records
  the same commit as this process (a checkout or an installed package)."""
  env = dict(os.environ if environ is None else environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(fcnjax.__file__)))
  env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
  env["PYTHONSAFEPATH"] = "1"
  return env


def run_seeds(seeds, cores, command, log_dir, log=print, poll_s=2.0, env=None):
  """Runs command(seed) for each seed, one process per core at a time, each
  pinned to its core, stdout and stderr to log_dir/seed-S.log, in `env`
  (default `package_env()`). Returns {seed: exit status}; a failed seed does
  not stop the others."""
  env = package_env() if env is None else env
  os.makedirs(log_dir, exist_ok=True)
  pending, running, codes = list(seeds), {}, {}
  start = time.time()
  while pending or running:
    for core in [c for c in cores if c not in running]:
      if not pending:
        break
      seed = pending.pop(0)
      path = os.path.join(log_dir, f"seed-{seed}.log")
      with open(path, "a") as out:
        process = subprocess.Popen(command(seed), stdout=out, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=lambda c=core: os.sched_setaffinity(0, {c}))
      running[core] = (seed, process, path)
      log(f"seed {seed}: started on core {core} (log {path})")
    time.sleep(poll_s)
    for core, (seed, process, path) in list(running.items()):
      if process.poll() is not None:
        codes[seed] = process.returncode
        del running[core]
        done = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
        log(f"seed {seed}: {done} on core {core} after {time.time() - start:.0f} s; "
            f"{len(pending)} seeds waiting, {len(running)} running")
  return codes
