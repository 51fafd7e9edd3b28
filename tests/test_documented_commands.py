"""Every command line in README.md and docs/: its entry point exists, its config
file loads, its --config.* overrides parse and the result passes validation."""
import glob
import os
import re
import shlex
import tomllib

import pytest
from absl import flags
from ml_collections import config_flags

from fcnjax.train import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTS = ("fcnjax-", "python -m fcnjax", "python experiments/")


def documented_commands():
  """(file, command) for each command in the docs; '\\' continuations joined,
  '&&' chains split, comments dropped."""
  found = []
  for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs",
                                                                                "*.md"))):
    with open(path) as f:
      text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
      for part in line.split("&&"):
        part = part.split("  #")[0].strip()
        if part.startswith(STARTS):
          found.append((os.path.relpath(path, ROOT), " ".join(part.split())))
  return found


def _entry_exists(argv):
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  if argv[0].startswith("fcnjax-"):
    return argv[0] in scripts
  if argv[:2] == ["python", "-m"]:
    return os.path.exists(os.path.join(ROOT, argv[2].replace(".", "/") + ".py"))
  return os.path.exists(os.path.join(ROOT, argv[1]))


def _parsed_config(argv):
  """The config the command would run with, through ml_collections' own flag parsing."""
  from fcnjax.runtime import cli
  config_args = cli.resolve_config([a for a in argv if a.startswith("--config")])
  values = flags.FlagValues()
  argv = ["prog"] + config_args
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    values(argv)
    return values.config
  finally:
    os.chdir(cwd)


COMMANDS = documented_commands()


def test_the_docs_have_commands():
  files = {f for f, _ in COMMANDS}
  assert "README.md" in files and "docs/data.md" in files
  assert len(COMMANDS) >= 15


@pytest.mark.parametrize("where, command", COMMANDS, ids=[c[:60] for _, c in COMMANDS])
def test_documented_command_parses_and_validates(where, command):
  argv = shlex.split(command)
  assert _entry_exists(argv), f"{where}: no entry point for {command!r}"
  if any(a.startswith("--config=") for a in argv):
    config = _parsed_config(argv)
    validate.check_fields(config)
    for arg in argv:  # every override took effect, with its type
      match = re.fullmatch(r"--config\.([\w.]+)=(.*)", arg)
      if match:
        field, raw = match.groups()
        value = config
        for part in field.split("."):
          value = value[part]
        assert str(value) == raw or float(value) == float(raw), (where, arg, value)


def test_entry_points_import_together_and_define_no_flags():
  import importlib
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  from absl import app  # noqa: F401  (absl's own flags: defined on its first import)
  import orbax.checkpoint  # noqa: F401  (orbax's experimental flags: likewise)
  before = set(flags.FLAGS)
  for target in scripts.values():
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), target
  assert set(flags.FLAGS) == before
  assert {"fcnjax-ablate", "fcnjax-convert", "fcnjax-preview", "fcnjax-bench"} <= set(scripts)


def test_packaged_configs_are_found_by_name():
  from fcnjax.runtime import cli
  argv = cli.resolve_config(["prog", "--config=fcn8s_shapes", "--config.seed=3", "--workdir=w"])
  path = argv[1][len("--config="):]
  assert os.path.isfile(path) and path.startswith(cli.CONFIG_DIR)
  assert argv[2:] == ["--config.seed=3", "--workdir=w"]
  assert cli.resolve_config(["p", "--config=fcnjax/configs/fcn8s_voc.py"])[1] == (
      "--config=fcnjax/configs/fcn8s_voc.py")  # paths unchanged
  with pytest.raises(ValueError, match="--config=fcn9s: .*fcn8s_shapes"):
    cli.resolve_config(["p", "--config=fcn9s"])
  assert {"fcn8s_shapes", "fcn32s_voc", "upsampling_study"} <= set(cli.packaged_configs())
  by_name = _parsed_config([argv[1]])
  by_path = _parsed_config(["--config=fcnjax/configs/fcn8s_shapes.py"])
  assert by_name.to_dict() == by_path.to_dict()
