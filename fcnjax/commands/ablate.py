"""Train one config over a grid of swept fields; table + figure, mean ± std over seeds.

    fcnjax-ablate --config=fcn8s_shapes --workdir=runs/ablate_skips \
        --sweep=model.variant=32s,16s,8s --sweep=seed=0,1,2

`--sweep` may be given several times: the runs are the cross product. Values
are parsed to the field's type (bool, int, float, tuple as '(0.5,1.5)', None
fields). Each run trains in WORKDIR/<field=value,...>/ (resumable); the
results (mean ± std over `seed` and the per-seed values) go to
WORKDIR/results.json, results.md and ablation.png.
"""
from absl import flags

from fcnjax.runtime import cli
from fcnjax.studies import experiment


def main(argv):
  del argv
  cli.start()
  config = cli.FLAGS.config
  sweeps = [experiment.parse_sweep(s, config) for s in flags.FLAGS.sweep]
  experiment.run_grid(config, cli.FLAGS.workdir, sweeps, tuple(flags.FLAGS.metrics))
  with open(f"{cli.FLAGS.workdir}/results.md") as f:
    print(f.read())


def run():
  cli.define_flags()
  flags.DEFINE_multi_string("sweep", None, "field=value1,value2,... (a dotted config "
                            "field); repeat for a grid.")
  flags.DEFINE_list("metrics", list(("mean_iou", "boundary_iou", "pixel_acc")),
                    "Scores to tabulate and plot.")
  flags.mark_flag_as_required("sweep")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
