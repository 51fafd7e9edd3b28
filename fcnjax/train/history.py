"""W/history.json: the curves of a run ({name: [[step, value], ...]}), kept across resumes."""
import json
import os

import jax


def load_history(workdir, start_step):
  """W/history.json ({name: [[step, value], ...]}) up to start_step: what a
  resumed run continues, so curves cover the whole run."""
  path = os.path.join(workdir, "history.json")
  if not start_step or not os.path.exists(path):
    return {}
  with open(path) as f:
    history = json.load(f)
  return {k: [tuple(p) for p in v if p[0] <= start_step] for k, v in history.items()}


def save_history(workdir, history):
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, "history.json.tmp")
    with open(tmp, "w") as f:
      json.dump(history, f)
    os.replace(tmp, os.path.join(workdir, "history.json"))
