"""W/history.json: the curves of a run ({name: [[step, value], ...]}), kept across resumes."""
import json
import os

import jax


def load_history(workdir, start_step=None):
  """W/history.json ({name: [(step, value), ...]}) up to start_step (what a
  resumed run continues, so curves cover the whole run); None: every point.
  {} when the file is absent or start_step is 0."""
  path = os.path.join(workdir, "history.json")
  if start_step == 0 or not os.path.exists(path):
    return {}
  with open(path) as f:
    history = json.load(f)
  return {k: [tuple(p) for p in v if start_step is None or p[0] <= start_step]
          for k, v in history.items()}


def save_history(workdir, history):
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, "history.json.tmp")
    with open(tmp, "w") as f:
      json.dump(history, f)
    os.replace(tmp, os.path.join(workdir, "history.json"))
