"""Run one config several times with one field swept; table + figure.

    python -m fcnjax.ablate --config=experiments/configs/fcn8s_shapes.py \
        --workdir=runs/ablate_upsample --sweep=model.upsample=learned,bilinear,nearest

    python -m fcnjax.ablate --config=experiments/configs/fcn8s_shapes.py \
        --workdir=runs/ablate_skips --sweep=model.variant=32s,16s,8s

Each value trains in WORKDIR/<field>=<value>/ (resumable like any run) and is
evaluated; WORKDIR/results.json, results.md and ablation.png compare mIoU and
boundary IoU side by side.
"""
import copy
import json
import os

from absl import app, flags

from fcnjax import cli

cli.define_flags()
flags.DEFINE_string("sweep", None, "field=value1,value2,... (a dotted config field).")
flags.DEFINE_list("metrics", ["mean_iou", "boundary_iou", "pixel_acc"],
                  "Scores to tabulate and plot.")


def parse_sweep(spec):
  """'model.upsample=a,b' -> ('model.upsample', ['a', 'b'])."""
  if not spec or "=" not in spec:
    raise ValueError(f"--sweep={spec!r}: expected field=value1,value2,...")
  field, values = spec.split("=", 1)
  return field, [v for v in values.split(",") if v]


def with_field(config, field, raw):
  """A copy of config with the dotted field set, the value cast to its type."""
  config = copy.deepcopy(config)
  *path, last = field.split(".")
  target = config
  for part in path:
    target = target[part]
  if last not in target:
    raise ValueError(f"--sweep: config has no field {field!r}")
  old = target[last]
  target[last] = type(old)(raw) if old is not None and not isinstance(old, bool) else raw
  return config


def run_ablation(config, workdir, field, values, metrics):
  from fcnjax import viz
  from fcnjax.train import loop
  rows = []
  for value in values:
    run_dir = os.path.join(workdir, f"{field}={value}")
    scores = loop.train_and_evaluate(with_field(config, field, value), run_dir)
    if scores is None:  # already trained: score the best checkpoint
      from fcnjax.inference import evaluate_workdir
      scores = evaluate_workdir(with_field(config, field, value), run_dir)
    rows.append({field: value, **{m: scores[m] for m in metrics}})
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)
  table = viz.markdown_table(rows, [field] + list(metrics))
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(table + "\n")
  long_rows = [{"variant": r[field], "metric": m, "value": r[m]} for r in rows for m in metrics]
  viz.plot_ablation(os.path.join(workdir, "ablation.png"), long_rows, metric="value",
                    group="metric", label="variant")
  return rows, table


def main(argv):
  del argv
  cli.start()
  field, values = parse_sweep(flags.FLAGS.sweep)
  _, table = run_ablation(cli.FLAGS.config, cli.FLAGS.workdir, field, values,
                          flags.FLAGS.metrics)
  print(table)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
