"""The upsampling study: the lecture's operators in the skip-free decoder, paired seeds.

    fcnjax-study upsampling --workdir=runs/upsampling_study

The model (`fcnjax.models.UpsamplingDecoderNet`) is an encoder with 2x2
pools and a skip-free decoder of x2 stages, each *upsample -> conv-BN-ReLU*:
the operator (an entry of `fcnjax.models.UPSAMPLERS`, the same code FCN's
skip study uses) is the only variable. Every registered operator is an arm;
the default arms are the lecture's (`models.LECTURE_UPSAMPLERS`, the
recorded study). Pre-registered contrasts (test mIoU, paired over seeds):
dense vs sparse operators (read from each operator's declared kind);
bilinear-init vs random-init transpose conv; learned vs fixed bilinear.
Splits, resolution and scoring: `fcnjax.configs.study_config` and the
protocol in `fcnjax.studies.study`; the budget (num_train_steps) from the
pilot recorded in experiments/results/pilot/README.md. For a GPU, scale up
from here: --config.num_train_steps=... --config.model.backbone=vgg16.
"""
from fcnjax import models
from fcnjax.configs import study_config
from fcnjax.studies.spec import Study


def get_config():
  config = study_config(num_train_steps=1500)
  config.model.name = "decoder"
  config.model.upsample = "max_unpool"
  config.model.backbone = "small"
  config.model.depth = 4  # 4 pools: a 4x4 bottleneck for the 64x64 images
  return config


def contrasts(labels):
  """Dense vs sparse over the operators that run (their declared kind); the two
  transpose-conv contrasts."""
  dense = [a for a in labels if models.resolve(a).dense]
  sparse = [a for a in labels if not models.resolve(a).dense]
  out = {
      "learned (bilinear init) vs learned_random": (
          {"learned": 1.0, "learned_random": -1.0}, "learned", "learned_random"),
      "learned vs bilinear (fixed)": ({"learned": 1.0, "bilinear": -1.0}, "learned",
                                      "bilinear"),
  }
  if dense and sparse:
    out = {"dense vs sparse": ({**{a: 1 / len(dense) for a in dense},
                                **{a: -1 / len(sparse) for a in sparse}}, "dense", "sparse"),
           **out}
  return out


STUDY = Study(
    name="upsampling", config_file=__file__,
    arms={name: {"model.upsample": name} for name in models.UPSAMPLERS},
    contrasts=contrasts,
    declared={"dense vs sparse": "2026-12-01",
              "learned (bilinear init) vs learned_random": "2026-12-01",
              "learned vs bilinear (fixed)": "2026-12-01"},
    default_arms=tuple(models.LECTURE_UPSAMPLERS),
    summary="the upsampling operator in the skip-free decoder")
