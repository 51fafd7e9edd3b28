"""The entry points live in fcnjax/commands/; the console scripts point there,
and the old top-level module names (`python -m fcnjax.evaluate`, `from
fcnjax import config`) still work as aliases."""
import importlib
import os
import subprocess
import sys
import tomllib

from fcnjax import config, configs
from fcnjax.runtime import cli
from test_import_graph import ALIASES, COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"fcnjax-train": "train", "fcnjax-evaluate": "evaluate", "fcnjax-predict": "predict",
           "fcnjax-bench": "bench", "fcnjax-ablate": "ablate", "fcnjax-convert": "convert",
           "fcnjax-preview": "preview", "fcnjax-study": "study", "fcnjax-export": "export"}


def test_each_console_script_runs_its_command_module():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert scripts == {name: f"{COMMANDS}.{module}:run" for name, module in SCRIPTS.items()}
  for target in scripts.values():
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), target
  folder = os.path.join(ROOT, *COMMANDS.split("."))
  assert sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f[0] != "_") == (
      sorted(SCRIPTS.values()))


def test_the_old_module_names_are_aliases():
  for alias, command in ALIASES.items():
    old, new = importlib.import_module(alias), importlib.import_module(command)
    assert old.run is new.run and old.main is new.main, alias
  assert importlib.import_module("fcnjax.run_study").MODULE == "fcnjax.commands.study"
  assert importlib.import_module("fcnjax.convert").vgg16_from_torch is (
      importlib.import_module("fcnjax.commands.convert").vgg16_from_torch)
  for name in ("default_config", "study_config", "paper_voc_config", "mmseg_fcn8s_config"):
    assert getattr(config, name) is getattr(configs, name)
  assert "_base" not in cli.packaged_configs()


def test_python_m_an_old_name_runs_the_command():
  done = subprocess.run([sys.executable, "-m", "fcnjax.evaluate", "--help"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert done.returncode == 1 and not done.stderr, done.stderr  # absl's --help exits 1
  assert "Evaluate a trained model" in done.stdout and "--tta_scales" in done.stdout
