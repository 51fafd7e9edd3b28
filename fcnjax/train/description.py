"""What each checkpoint says about its run, and the check that a config fits it.

Saved with every step (orbax custom metadata): the config as JSON, the model
fields, the number and names of the classes. Evaluate / predict with a config
whose model fields or class count differ get one error naming those fields.
"""
import json
import os

from fcnjax import models

# Families that took no operator before config.model.upsample_options existed:
# their checkpoints from then unpool by switches, whatever upsample says.
_SWITCH_ONLY_BEFORE = ("segnet", "deconvnet")


def resolved_model(model):
  """A saved or configured model block as the model built from it: defaults for
  missing fields, each family's own for fields left None."""
  legacy = "upsample_options" not in model and model.get("name") in _SWITCH_ONLY_BEFORE
  try:
    model = models.resolved(model)
  except ValueError:  # an unknown family: compared as written
    return dict(model)
  if legacy:
    model["upsample"] = "max_unpool"
  return model


def describe(config, info):
  """What each checkpoint records about its run (JSON-ready)."""
  saved = json.loads(config.to_json_best_effort())
  return {"config": saved, "model": saved["model"], "num_classes": info.num_classes,
          "class_names": list(info.class_names)}


def mismatches(saved, expected):
  """The model fields and num_classes that differ, one 'field: a vs b' each."""
  diffs = []
  saved_model, expected_model = map(resolved_model, (saved["model"], expected["model"]))
  for key in sorted(set(saved_model) | set(expected_model)):
    a, b = saved_model.get(key), expected_model.get(key)
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
