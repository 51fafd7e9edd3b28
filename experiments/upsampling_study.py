"""The upsampling study: every upsampling operator in the skip-free decoder, paired seeds.

    python experiments/upsampling_study.py --workdir=runs/upsampling_study

The model (`fcnjax.models.UpsamplingDecoderNet`) is an encoder with 2x2
pools and a skip-free decoder of x2 stages, each *upsample -> conv-BN-ReLU*:
the operator (an entry of `fcnjax.models.UPSAMPLERS`, the same code FCN's
skip study uses) is the only variable. Protocol, tables and figures:
`fcnjax.studies.study`. Pre-registered contrasts (test mIoU, paired over seeds):
dense (nearest, bilinear, learned, learned_random) vs sparse (bed of nails,
max-unpool) operators; bilinear-init vs random-init transpose conv; learned
vs fixed bilinear. Which operators are dense or sparse is read from the
registry (each operator's declared kind). Config fields can be overridden as in training; re-running
resumes and rescores by the same rule.
"""
import os

from absl import flags

from fcnjax.runtime import cli
from fcnjax.studies import study



def contrasts(names):
  """The pre-registered contrasts over the arms `names`; dense and sparse read
  from each operator's declared kind (`models.operator`)."""
  from fcnjax import models
  dense = [a for a in names if models.resolve(a).dense]
  sparse = [a for a in names if not models.resolve(a).dense]
  return {
      "dense vs sparse": ({**{a: 1 / len(dense) for a in dense},
                           **{a: -1 / len(sparse) for a in sparse}}, "dense", "sparse"),
      **LECTURE_CONTRASTS}


LECTURE_CONTRASTS = {
    "learned (bilinear init) vs learned_random": (
        {"learned": 1.0, "learned_random": -1.0}, "learned", "learned_random"),
    "learned vs bilinear (fixed)": ({"learned": 1.0, "bilinear": -1.0}, "learned", "bilinear"),
}


def main(argv):
  del argv
  from fcnjax import models
  cli.start()
  FLAGS = flags.FLAGS
  names = FLAGS.arms or list(models.LECTURE_UPSAMPLERS)
  unknown = sorted(set(names) - set(models.UPSAMPLERS))
  if unknown:
    raise SystemExit(f"error: --arms: unknown {unknown}; valid: {list(models.UPSAMPLERS)}")
  arms = {name: {"model.upsample": name} for name in names}
  study.run_study(FLAGS.config, FLAGS.workdir, arms, FLAGS.seeds, contrasts(names))


def run():
  cli.define_study_flags(os.path.join(cli.CONFIG_DIR, "upsampling_study.py"),
                         "runs/upsampling_study")
  flags.DEFINE_list("arms", None, "Upsampling operators (default: the lecture's, "
                    "models.LECTURE_UPSAMPLERS; any registered name).")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
