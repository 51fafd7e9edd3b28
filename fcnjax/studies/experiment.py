"""Config fields swept and set by name, and results aggregated over seeds.

    sweeps = [parse_sweep("model.upsample=nearest,max_unpool", config),
              parse_sweep("seed=0,1,2", config)]
    runs, summary = study.run_grid(config, "runs/ablate", sweeps)  # fcnjax-ablate

`grid` is the sweeps' cross product; `aggregate` groups runs by every swept
field except `seed` (mean, std with ddof=1, the per-seed values);
`write_results` the table and figure. Training and scoring are the study
runner's (`fcnjax.studies.study.run_grid` / `run_arms`).
"""
import ast
import copy
import itertools
import json
import math
import os

import numpy as np

from fcnjax import viz
from fcnjax.train import assemble

DEFAULT_METRICS = ("mean_iou", "boundary_iou", "pixel_acc")
_BAD_CHARS = set("=;| \t")


def _split_values(text):
  """Splits on commas outside brackets: '(1,2),(3,4)' -> ['(1,2)', '(3,4)']."""
  values, depth, item = [], 0, ""
  for ch in text:
    depth += ch in "([" and 1 or 0
    depth -= ch in ")]" and 1 or 0
    if ch == "," and depth == 0:
      values.append(item)
      item = ""
    else:
      item += ch
  return values + [item]


def _field_type(config, field, sweep):
  *path, last = field.split(".")
  target = config
  for part in path:
    if part not in target or not hasattr(target[part], "get_type"):
      raise ValueError(f"--sweep={sweep}: config has no field {field!r}")
    target = target[part]
  if last not in target:
    raise ValueError(f"--sweep={sweep}: config has no field {field!r}")
  return target.get_type(last)


def parse_value(raw, kind, sweep):
  """raw text -> a value of type `kind` (bool, int, float, str, tuple, None type)."""
  error = ValueError(f"--sweep={sweep}: {raw!r} is not a valid {kind.__name__}")
  if kind is bool:
    if raw.lower() not in ("true", "false", "1", "0"):
      raise error
    return raw.lower() in ("true", "1")
  if kind in (int, float):
    try:
      value = float(raw) if kind is float else int(raw)
    except ValueError:
      raise error from None
    if kind is float and not math.isfinite(value):
      raise error
    return value
  if kind in (tuple, list):
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      raise error from None
    if not isinstance(value, (tuple, list)):
      raise error
    return kind(value)
  if kind is str:
    if _BAD_CHARS & set(raw):
      raise error
    return raw
  if raw == "None":  # a placeholder field's only untyped value
    return None
  raise error


def parse_sweep(spec, config):
  """'model.upsample=a,b' -> ('model.upsample', ['a', 'b']), values typed like the field.

  Refuses (ValueError naming the sweep) a missing '=', an unknown field, an
  empty list or item, repeated values and values that do not parse.
  """
  if not spec or "=" not in spec:
    raise ValueError(f"--sweep={spec!r}: expected field=value1,value2,...")
  field, text = spec.split("=", 1)
  if not field:
    raise ValueError(f"--sweep={spec}: no field name before '='")
  kind = _field_type(config, field, spec)
  raws = _split_values(text)
  if not text or any(not r for r in raws):
    raise ValueError(f"--sweep={spec}: empty value list or empty item")
  values = [parse_value(r, kind, spec) for r in raws]
  if len(set(map(repr, values))) != len(values):
    raise ValueError(f"--sweep={spec}: a value is repeated")
  return field, values


def with_fields(config, assignment):
  """A copy of config with each dotted field of {field: value} set."""
  config = copy.deepcopy(config)
  for field, value in assignment.items():
    *path, last = field.split(".")
    target = config
    for part in path:
      target = target[part]
    target[last] = value
  return config


def run_name(assignment):
  """{'model.upsample': 'nearest', 'seed': 0} -> 'upsample=nearest,seed=0'."""
  return ",".join(f"{f.split('.')[-1]}={v}" for f, v in assignment.items())


def grid(sweeps):
  """[(field, values), ...] -> the cross product as a list of {field: value}."""
  fields = [f for f, _ in sweeps]
  if len(set(fields)) != len(fields):
    raise ValueError(f"--sweep: a field is swept twice: {fields}")
  return [dict(zip(fields, combo)) for combo in itertools.product(*(v for _, v in sweeps))]


def prepare_all(configs):
  """{name: config} -> {name: assemble.Prepared}: every config checked and its
  model built before anything trains (an error names its run)."""
  prepared = {}
  for name, config in configs.items():
    try:
      prepared[name] = assemble.prepare(config)
    except ValueError as e:
      raise ValueError(f"run {name}: {e}") from None
  return prepared


def aggregate(runs, fields, metrics=DEFAULT_METRICS, seed_field="seed"):
  """Groups runs by the swept fields other than seed_field -> one row per group.

  Each row: the group's field values, n, and for each metric `<m>_mean`,
  `<m>_std` (ddof=1; NaN for a single run) and `<m>_values` (one per seed).
  """
  keys = [f for f in fields if f != seed_field]
  groups = {}
  for run in runs:
    groups.setdefault(tuple(repr(run[f]) for f in keys), []).append(run)
  rows = []
  for members in groups.values():
    row = {f: members[0][f] for f in keys}
    row["n"] = len(members)
    for m in metrics:
      values = [float(r[m]) for r in members]
      row[f"{m}_values"] = values
      row[f"{m}_mean"] = float(np.mean(values))
      row[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    rows.append(row)
  return rows


def mean_std(row, metric):
  """'0.6123 ± 0.0123' (or the mean alone for one seed)."""
  mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
  return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def default_label(fields, seed_field="seed"):
  """row -> its swept values other than the seed, joined ('all' if none)."""
  keys = [f for f in fields if f != seed_field]
  return lambda row: ",".join(str(row[k]) for k in keys) or "all"


def write_results(workdir, runs, summary, fields, metrics, label=None, table=None,
                  extra=None):
  """results.json (runs + summary + `extra`), results.md (`table`, by default
  mean ± std per group) and ablation.png (bars with the std as error bars);
  label: summary row -> its name."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"runs": runs, "summary": summary, **(extra or {})}, f, indent=2)
  label = label or default_label(fields)
  if table is None:
    table_rows = [{"run": label(r), "n": r["n"], **{m: mean_std(r, m) for m in metrics}}
                  for r in summary]
    table = viz.markdown_table(table_rows, ["run", "n"] + list(metrics))
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  long_rows = [{"variant": label(r), "metric": m, "value": r[f"{m}_mean"],
                "err": r[f"{m}_std"]} for r in summary for m in metrics]
  viz.plot_ablation(os.path.join(workdir, "ablation.png"), long_rows, metric="value",
                    group="metric", label="variant", error="err")
  return table
