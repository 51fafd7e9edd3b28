"""What each checkpoint says about its run, and the check that a config fits it.

Saved with every step (orbax custom metadata): the config as JSON, the model
fields, the number and names of the classes. Evaluate / predict with a config
whose model fields or class count differ get one error naming those fields.
"""
import json
import os


def describe(config, info):
  """What each checkpoint records about its run (JSON-ready)."""
  saved = json.loads(config.to_json_best_effort())
  return {"config": saved, "model": saved["model"], "num_classes": info.num_classes,
          "class_names": list(info.class_names)}


def mismatches(saved, expected):
  """The model fields and num_classes that differ, one 'field: a vs b' each."""
  diffs = []
  for key in sorted(set(saved["model"]) | set(expected["model"])):
    a, b = saved["model"].get(key), expected["model"].get(key)
    if a != b:
      diffs.append(f"model.{key}: checkpoint {a!r}, config {b!r}")
  if saved["num_classes"] != expected["num_classes"]:
    diffs.append(f"num_classes: checkpoint {saved['num_classes']}, "
                 f"config {expected['num_classes']}")
  return diffs


def check_matches(saved, expected, workdir):
  """ValueError naming the fields where `expected` does not fit `saved`."""
  diffs = mismatches(saved, expected)
  if diffs:
    raise ValueError(f"the config does not fit the checkpoints in {workdir}: "
                     + "; ".join(diffs) + " (the run's settings are in "
                     f"{os.path.join(workdir, 'config.json')})")
