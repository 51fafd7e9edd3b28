"""Why does guided SAPA train slowly? An exploratory probe, not part of the study.

    taskset -c 1 python experiments/sapa_probe.py --workdir=/tmp/sapa_probe --steps=600

The guided operator study's config (skip fusion in every arm) at a short budget,
one seed, each arm trained with `study.pilot` (selection split only; the test
split is never read): bilinear and SAPA-B as in the study, and SAPA-B without
its GroupNorms (`norm=False`) and with a 64-d embedding (the NeurIPS release's
size). Prints each run's final selection mIoU and its last logged train loss.
"""
import os

from absl import app, flags

from fcnjax import viz
from fcnjax.runtime import cli
from fcnjax.studies import operators, study
from fcnjax.train import history

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/sapa_probe", "where the runs go")
flags.DEFINE_integer("steps", 600, "training steps of every run (cosine to zero at the end)")
flags.DEFINE_integer("seed", 0, "the seed of every run")

ARMS = {
    "bilinear": {"model.upsample": "bilinear"},
    "sapa": {"model.upsample": "sapa"},
    "sapa_no_norm": {"model.upsample": "sapa", "model.upsample_options.norm": False},
    "sapa_embed64": {"model.upsample": "sapa", "model.upsample_options.embedding": 64},
}


def main(_):
  cli.start()
  config = operators.get_config(skips=True)
  config.num_train_steps = FLAGS.steps
  config.eval_every_steps = FLAGS.steps // 4
  runs, _ = study.pilot(config, FLAGS.workdir, ARMS, seeds=[FLAGS.seed])
  rows = []
  for run in runs:
    curves = history.load_history(os.path.join(FLAGS.workdir, f"{run['arm']},seed={FLAGS.seed}"))
    rows.append({"arm": run["arm"], "steps": run["steps"],
                 "selection mIoU": run["selection mIoU"],
                 "last train loss": f"{curves['train_loss'][-1][1]:.3f}"})
  print(viz.markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
  app.run(main)
