"""Runs a registered study: its arms x paired seeds, scored by one protocol.

    fcnjax-study upsampling --workdir=runs/upsampling_study
    fcnjax-study skip --arms=fcn8s,segnet --seeds=0,1,2,3,4,5,6,7,8,9
    fcnjax-study upsampling --status          # runs done and left, time left, and
                                              # WORKDIR/selection_curves.png
    fcnjax-study upsampling --vmap_seeds=true # each arm's seeds as one program
    fcnjax-study operators --layout=one_core  # one core busy, the others free
    fcnjax-study upsampling --pilot --arms=carafe,dysample-s+ \
        --config.num_train_steps=3000 --workdir=runs/pilot   # is the budget flat?

The studies are `fcnjax.studies.registry.STUDIES` (one module each: arms,
pre-registered contrasts with their dates, base config, scored splits).
--config overrides the study's base config field by field
(--config.num_train_steps=...). Re-running resumes, reads back every run
already scored under the same key (config and numerics code), and retrains
a run whose key changed (the old one moved aside). On a CPU every run is
pinned to one core, seeds side by side (--layout). A long study can run from
a pinned worktree of one commit (README "Running a study from a pinned
worktree").
"""
import json
import os
import sys

from absl import flags
import jax

from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.runtime import cli
from fcnjax.studies import layout, registry, study
from fcnjax.studies import study_report as report

MODULE = "fcnjax.commands.study"  # what the seed processes run (`python -m`)


def _name(argv):
  """The study named on the command line (the first non-flag argument)."""
  names = [a for a in argv[1:] if not a.startswith("-")]
  if len(names) != 1 or names[0] not in registry.STUDIES:
    raise SystemExit(f"error: name one study: fcnjax-study NAME [flags]; NAME one of "
                     f"{list(registry.STUDIES)}" + (f" (got {names})" if names else ""))
  return names[0]


def main(argv):
  FLAGS = flags.FLAGS
  spec = registry.STUDIES[_name(argv)]
  cli.start()
  arms = spec.select(FLAGS.arms)
  seeds = [int(s) for s in (FLAGS.seeds or range(spec.seeds))] if not FLAGS.pilot else None
  workdir = FLAGS.workdir or os.path.join("runs", spec.name)
  if FLAGS.status:
    rows, eta = study.status(FLAGS.config, workdir, arms, seeds, as_trained=FLAGS.report)
    table = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
    print(viz.markdown_table(table, list(table[0])))
    figure = os.path.join(workdir, "selection_curves.png")
    if report.plot_selection_curves(figure, rows):
      print(f"selection curves (the budget pilot's figure): {figure}")
    flatness = study.flatness(rows)
    if flatness:  # the first seeds as the budget pilot (selection curves only)
      print(viz.markdown_table(flatness, list(flatness[0])))
    power = study.pilot_power(rows, spec.contrasts_for(list(arms)))
    if power:  # the first seeds as the power pilot (selection split only)
      print(viz.markdown_table(power, list(power[0])))
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "partial", "stale", "left")}
    print(f"{counts}; about {eta / 60:.0f} min of training left at each arm's mean so far"
          if eta == eta else f"{counts}; no run done yet to estimate the time left")
    return
  if FLAGS.pilot:
    seeds = [int(s) for s in (FLAGS.seeds or [0])]
    runs, per_arm = study.pilot(FLAGS.config, workdir, arms, seeds)
    with open(os.path.join(workdir, "pilot.json"), "w") as f:
      json.dump({"study": spec.name, "provenance": study.provenance(), "runs": runs,
                 "arms": per_arm, "config": json.loads(FLAGS.config.to_json_best_effort())},
                f, indent=1)
    report.plot_selection_curves(os.path.join(workdir, "selection_curves.png"), runs)
    print(viz.markdown_table([{k: v for k, v in r.items() if k != "curve"} for r in runs],
                             ["arm", "seed", "steps", "selection mIoU", "gain last 20 %"]))
    print(viz.markdown_table(per_arm, list(per_arm[0])))
    return
  vmap_seeds = {"true": True, "false": False}.get(FLAGS.vmap_seeds, "auto")
  where = layout.resolve(FLAGS.layout, jax.default_backend())
  if where != "in_process" and vmap_seeds is not True and not FLAGS.report:
    _train_seeds_side_by_side(workdir, arms, seeds, where)
  study.run_study(FLAGS.config, workdir, arms, seeds, spec.contrasts_for(list(arms)),
                  splits=spec.scored_splits, declared=spec.declared,
                  allow_mixed=FLAGS.allow_mixed, vmap_seeds=vmap_seeds,
                  published=spec.published, read_only=FLAGS.report)


def _train_seeds_side_by_side(workdir, arms, seeds, where):
  """Each seed with a run left, all its arms, in a process of its own pinned
  to one core, one process per core (`fcnjax.studies.layout`); the tables are
  then made here from the runs read back."""
  rows, _ = study.status(flags.FLAGS.config, workdir, arms, seeds)
  left = sorted({row["seed"] for row in rows if row["state"] != "done"})
  if not left:
    return
  prepared = set()  # each dataset once here, not raced by the seed processes
  for _, _, cfg in study.run_configs(flags.FLAGS.config, workdir, arms, left).values():
    key = cfg.data.to_json_best_effort(sort_keys=True)
    if key not in prepared:
      pipeline.get_info(cfg.data)
      prepared.add(key)
  cores = layout.cores_for(where)
  print(f"--layout={where}: seeds {left}, one process per core on cores {cores} (each run "
        "on one core)", flush=True)
  logs = os.path.join(workdir, "logs")
  codes = layout.run_seeds(left, cores, lambda seed: layout.seed_command(sys.argv, seed, MODULE), logs,
                           log=lambda line: print(line, flush=True))
  failed = sorted(seed for seed, code in codes.items() if code)
  if failed:
    raise SystemExit(f"error: seeds {failed} failed: see {logs}/seed-S.log (the runs done "
                     "are kept; run the same command again to resume)")


def run():
  spec = registry.STUDIES.get(next((a for a in sys.argv[1:] if not a.startswith("-")), ""))
  cli.define_study_flags(spec.config_file if spec else registry.STUDIES["upsampling"].config_file,
                         None, seeds=0)  # none given: the study's (the pilot: seed 0)
  flags.DEFINE_list("arms", None, "A subset of the study's arms (default: its default arms).")
  flags.DEFINE_bool("status", False, "Show the runs done and left and the time left; train "
                    "nothing (with --report: each run under the key it was trained with, "
                    "as --report reads it).")
  flags.DEFINE_bool("pilot", False, "Train each arm's --seeds (default 0) and report how flat "
                    "each selection curve is: the budget pilot (the test split is not touched).")
  flags.DEFINE_bool("report", False, "Write the tables and figures from the runs as they "
                    "were trained (e.g. from a pinned worktree of another commit: each scored "
                    "at its budget, all at one commit), training and rescoring nothing.")
  flags.DEFINE_bool("allow_mixed", False, "Accept runs from other commits, library versions, "
                    "or (within a seed) other CPUs in one study.")
  flags.DEFINE_enum("vmap_seeds", "auto", ["auto", "true", "false"], "Train each arm's "
                    "seeds as one vmapped program (fcnjax.train.seeds); auto: only on an "
                    "accelerator (on CPU it measured 0.56x sequential throughput).")
  flags.DEFINE_enum("layout", "auto", layout.LAYOUTS, "Where runs execute on a CPU: "
                    "side_by_side (one process per core, each a seed, every run on one "
                    "core), one_core (one at a time on the last core, the others free), "
                    "in_process (here, on the cores this process has); auto: side_by_side "
                    "on a CPU with >= 2 cores, else in_process.")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
