"""The study runner's CPU layouts: seeds side by side, each process pinned to
one core (checked with a stand-in command that records its affinity), the
seed command it launches, and which layout 'auto' means where."""
import os
import subprocess
import sys

import pytest

from fcnjax.studies import layout


def _recorder(out_dir, fail_seed=None):
  """command(seed): a python process writing its affinity to out_dir/<seed>
  (exit 3 for fail_seed)."""
  def command(seed):
    code = (f"import os, sys; open(os.path.join({str(out_dir)!r}, '{seed}'), 'w')"
            f".write(str(sorted(os.sched_getaffinity(0)))); print('seed {seed} ran'); "
            f"sys.exit(3 if {seed} == {fail_seed!r} else 0)")
    return [sys.executable, "-c", code]
  return command


def test_each_seed_runs_once_pinned_to_one_core_and_a_failure_is_reported(tmp_path):
  cores = sorted(os.sched_getaffinity(0))[:2]
  lines = []
  codes = layout.run_seeds([0, 1, 2, 3], cores, _recorder(tmp_path, fail_seed=2),
                           str(tmp_path / "logs"), log=lines.append, poll_s=0.05)
  assert codes == {0: 0, 1: 0, 2: 3, 3: 0}
  for seed in range(4):
    pinned = eval((tmp_path / str(seed)).read_text())
    assert len(pinned) == 1 and pinned[0] in cores
    assert f"seed {seed} ran" in (tmp_path / "logs" / f"seed-{seed}.log").read_text()
  assert any("seed 2: FAILED (exit 3)" in line for line in lines)
  started = [line for line in lines if "started on core" in line]
  assert len(started) == 4 and len({line.split("core ")[1][:2] for line in started}) == len(cores)


def test_one_core_keeps_the_other_cores_free(tmp_path):
  codes = layout.run_seeds([5, 6], layout.cores_for("one_core", {0, 1}) if len(
      os.sched_getaffinity(0)) > 1 else sorted(os.sched_getaffinity(0)), _recorder(tmp_path),
      str(tmp_path / "logs"), log=lambda line: None, poll_s=0.05)
  assert codes == {5: 0, 6: 0}
  assert layout.cores_for("one_core", {0, 1, 2}) == [2]
  assert layout.cores_for("side_by_side", {3, 1}) == [1, 3]
  if len(os.sched_getaffinity(0)) > 1:
    assert {eval((tmp_path / s).read_text())[0] for s in ("5", "6")} == {1}


def test_auto_is_side_by_side_on_a_multicore_cpu_only():
  assert layout.resolve("auto", "cpu", cores=2) == "side_by_side"
  assert layout.resolve("auto", "cpu", cores=1) == "in_process"
  assert layout.resolve("auto", "gpu", cores=16) == "in_process"
  assert layout.resolve("one_core", "cpu", cores=2) == "one_core"
  with pytest.raises(ValueError, match=r"--layout=two: valid: auto, side_by_side"):
    layout.resolve("two", "cpu")


def test_the_seed_command_is_this_command_for_one_seed_in_process():
  argv = ["fcnjax-study", "operators", "--seeds=0,1,2", "--layout", "one_core", "--workdir=W",
          "--config.num_train_steps=30"]
  assert layout.seed_command(argv, 7, "fcnjax.commands.study") == [
      sys.executable, "-m", "fcnjax.commands.study", "operators", "--workdir=W",
      "--config.num_train_steps=30", "--seeds=7", "--layout=in_process"]


def test_seed_processes_import_the_fcnjax_this_process_runs(tmp_path):
  """Even from a working folder holding another fcnjax (Python >= 3.11)."""
  import fcnjax
  env = layout.package_env({"PYTHONPATH": "/elsewhere"})
  root = os.path.dirname(os.path.dirname(os.path.abspath(fcnjax.__file__)))
  assert env["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]
  decoy = tmp_path / "elsewhere"
  (decoy / "fcnjax").mkdir(parents=True)
  (decoy / "fcnjax" / "__init__.py").write_text("raise ImportError('the decoy')\n")
  out = subprocess.run([sys.executable, "-c", "import fcnjax; print(fcnjax.__file__)"],
                       cwd=decoy, env=layout.package_env(), capture_output=True, text=True)
  if sys.version_info >= (3, 11):
    assert out.stdout.strip() == os.path.abspath(fcnjax.__file__), out.stderr
