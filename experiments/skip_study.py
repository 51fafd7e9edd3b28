"""The skip study: FCN-32s / 16s / 8s, FCN-8s's final upsampler, and FCN-8s vs
SegNet vs DeconvNet, with the same seeds, in one command.

    python experiments/skip_study.py --workdir=runs/skip_study

Runs (each with every seed):
  fcn32s / fcn16s / fcn8s with the learned (bilinear-initialised) upsamplers:
    the analogue of the FCN paper's Table 2;
  fcn8s with bilinear, nearest and bed_of_nails as its upsamplers: FCN's last
    layer has nothing after it, so bed of nails leaves 63 of every 64 logits
    at the bias and cannot learn there (compare the decoder study);
  segnet and deconvnet (switch unpooling decoders) at the same budget.
WORKDIR gets the same outputs as experiments/upsampling_study.py.
"""
import os

from absl import app, flags

from fcnjax import study

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = {  # label: (model.name, model.variant, model.upsample)
    "fcn32s": ("fcn", "32s", "learned"),
    "fcn16s": ("fcn", "16s", "learned"),
    "fcn8s": ("fcn", "8s", "learned"),
    "fcn8s_bilinear": ("fcn", "8s", "bilinear"),
    "fcn8s_nearest": ("fcn", "8s", "nearest"),
    "fcn8s_bed_of_nails": ("fcn", "8s", "bed_of_nails"),
    "segnet": ("segnet", "8s", "learned"),
    "deconvnet": ("deconvnet", "8s", "learned"),
}


def label(point):
  for name, fields in RUNS.items():
    if fields == (point["model.name"], point["model.variant"], point["model.upsample"]):
      return name
  raise ValueError(f"no label for {point}")


def main(argv):
  del argv
  from fcnjax import cli
  cli.start()
  FLAGS = flags.FLAGS
  unknown = set(FLAGS.runs or ()) - set(RUNS)
  if unknown:
    raise app.UsageError(f"--runs: unknown {sorted(unknown)}; valid: {list(RUNS)}")
  points = [dict(zip(("model.name", "model.variant", "model.upsample"), RUNS[r]),
                 seed=int(s)) for r in (FLAGS.runs or RUNS) for s in FLAGS.seeds]
  _, _, table = study.run_study(FLAGS.config, FLAGS.workdir, points, label=label)
  print(table)


if __name__ == "__main__":
  study.define_flags(os.path.join(HERE, "configs/skip_study.py"), "runs/skip_study")
  flags.DEFINE_list("runs", None, f"A subset of {list(RUNS)} (default: all).")
  app.run(main)
