"""The budget pilot: is a study's budget past the plateau, on the selection split only?

    python experiments/pilot.py --study=upsampling --arms=bed_of_nails,max_unpool \
        --config.num_train_steps=1500 --workdir=runs/pilot_upsampling

For the skip study add --study=skip --config=skip_study.
Trains seed 0 of each named arm with the study's config, evaluating the
selection split ten times per run, and prints each selection-mIoU curve with
its gain over the last 20 % of steps: a budget is flat when every gain is
below 0.01 mIoU. The test split is never touched. WORKDIR gets pilot.json
and curves.png.
"""
import json
import os

from absl import flags

from fcnjax import viz
from fcnjax.runtime import cli
from fcnjax.studies import experiment, study

HERE = os.path.dirname(os.path.abspath(__file__))
FLAT = 0.01


def main(argv):
  del argv
  cli.start()
  import skip_study
  from fcnjax import models
  from fcnjax.train import history, loop
  FLAGS = flags.FLAGS
  arms = (skip_study.ARMS if FLAGS.study == "skip" else
          {a: {"model.upsample": a} for a in models.UPSAMPLERS})
  config = FLAGS.config
  rows, curves = [], {}
  for arm in FLAGS.arms:
    if arm not in arms:
      raise SystemExit(f"error: --arms: {arm!r} is not an arm of the {FLAGS.study} study; "
                       f"valid: {list(arms)}")
    run_dir = os.path.join(FLAGS.workdir, arm)
    loop.train_and_evaluate(experiment.with_fields(config, arms[arm]), run_dir)
    curve = history.load_history(run_dir)["eval_mean_iou"]
    gain = study.plateau_gain(curve)
    curves[arm] = curve
    rows.append({"arm": arm, "steps": config.num_train_steps,
                 "selection mIoU": " ".join(f"{v:.3f}" for _, v in curve),
                 "gain last 20 %": f"{gain:+.3f}", "flat": "yes" if gain < FLAT else "no"})
  table = viz.markdown_table(rows, list(rows[0]))
  with open(os.path.join(FLAGS.workdir, "pilot.json"), "w") as f:
    json.dump({"provenance": study.provenance(), "curves": curves, "rows": rows,
               "config": json.loads(config.to_json_best_effort())}, f, indent=1)
  viz.plot_curves(os.path.join(FLAGS.workdir, "curves.png"), {"selection mIoU": curves})
  print(table)


def run():
  flags.DEFINE_enum("study", "upsampling", ["upsampling", "skip"], "Which study's arms.")
  cli.define_study_flags(os.path.join(cli.CONFIG_DIR, "upsampling_study.py"),
                         "runs/pilot", seeds=1)
  flags.DEFINE_list("arms", None, "The arms to pilot (seed 0 each).")
  flags.mark_flag_as_required("arms")
  cli.run(main, __name__)


if __name__ == "__main__":
  import sys
  sys.path.insert(0, HERE)
  run()
