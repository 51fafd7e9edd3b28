"""The upsampling study: every upsampling operator in the skip-free decoder, paired seeds.

    python experiments/upsampling_study.py --workdir=runs/upsampling_study

The model (`fcnjax.models.UpsamplingDecoderNet`) is an encoder with 2x2
pools and a skip-free decoder of x2 stages, each *upsample -> conv-BN-ReLU*:
the operator (an entry of `fcnjax.models.UPSAMPLERS`, the same code FCN's
skip study uses) is the only variable. Protocol, tables and figures:
`fcnjax.studies.study`. Pre-registered contrasts (test mIoU, paired over seeds):
dense (nearest, bilinear, learned, learned_random) vs sparse (bed of nails,
max-unpool) operators; bilinear-init vs random-init transpose conv; learned
vs fixed bilinear. Config fields can be overridden as in training; re-running
resumes and rescores by the same rule.
"""
import os

from absl import flags

from fcnjax.runtime import cli
from fcnjax.studies import study

DENSE = ("nearest", "bilinear", "learned", "learned_random")
SPARSE = ("bed_of_nails", "max_unpool")
CONTRASTS = {
    "dense vs sparse": ({**{a: 1 / len(DENSE) for a in DENSE},
                         **{a: -1 / len(SPARSE) for a in SPARSE}}, "dense", "sparse"),
    "learned (bilinear init) vs learned_random": (
        {"learned": 1.0, "learned_random": -1.0}, "learned", "learned_random"),
    "learned vs bilinear (fixed)": ({"learned": 1.0, "bilinear": -1.0}, "learned", "bilinear"),
}


def main(argv):
  del argv
  from fcnjax import models
  cli.start()
  FLAGS = flags.FLAGS
  names = FLAGS.arms or list(models.UPSAMPLERS)
  unknown = sorted(set(names) - set(models.UPSAMPLERS))
  if unknown:
    raise SystemExit(f"error: --arms: unknown {unknown}; valid: {list(models.UPSAMPLERS)}")
  arms = {name: {"model.upsample": name} for name in names}
  study.run_study(FLAGS.config, FLAGS.workdir, arms, FLAGS.seeds, CONTRASTS)


def run():
  cli.define_study_flags(os.path.join(cli.CONFIG_DIR, "upsampling_study.py"),
                         "runs/upsampling_study")
  flags.DEFINE_list("arms", None, "Upsampling operators (default: all registered).")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
