"""Train one config over a grid of swept fields; table + figure, mean ± std over seeds.

    fcnjax-ablate --config=fcn8s_shapes --workdir=runs/ablate_skips \
        --sweep=model.variant=32s,16s,8s --sweep=seed=0,1,2

`--sweep` may be given several times: the runs are the cross product. Values
are parsed to the field's type (bool, int, float, tuple as '(0.5,1.5)', None
fields). The points without the seed are the arms and the `seed` sweep the
paired seeds of the study runner (`fcnjax.studies.study.run_grid`): each run
trains in WORKDIR/<field=value,...>,seed=<s>/ (resumable, cached under the
key of its config and the numerics code, its commit and machine recorded)
and is scored with its final weights on --splits (default: the config's
eval split). Results (mean ± std over seeds and the per-seed values) go to
WORKDIR/results.json, results.md and ablation.png.
"""
from absl import flags

from fcnjax.runtime import cli
from fcnjax.studies import experiment, study


def main(argv):
  del argv
  cli.start()
  config = cli.FLAGS.config
  sweeps = [experiment.parse_sweep(s, config) for s in flags.FLAGS.sweep]
  study.run_grid(config, cli.FLAGS.workdir, sweeps, tuple(flags.FLAGS.metrics),
                 splits=flags.FLAGS.splits, allow_mixed=flags.FLAGS.allow_mixed)
  with open(f"{cli.FLAGS.workdir}/results.md") as f:
    print(f.read())


def run():
  cli.define_flags()
  flags.DEFINE_multi_string("sweep", None, "field=value1,value2,... (a dotted config "
                            "field); repeat for a grid.")
  flags.DEFINE_list("metrics", list(("mean_iou", "boundary_iou", "pixel_acc")),
                    "Scores to tabulate and plot.")
  flags.DEFINE_list("splits", None, "Splits each run's final weights are scored on (the "
                    "table's is the first); default: the config's eval split.")
  flags.DEFINE_bool("allow_mixed", False, "Accept runs from other commits, library versions "
                    "or CPUs in one grid.")
  flags.mark_flag_as_required("sweep")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
