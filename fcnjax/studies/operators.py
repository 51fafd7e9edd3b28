"""The operator study: the lecture's upsamplers and today's, in two contexts.

    fcnjax-study operators --seeds=0,1,2,3,4,5,6,7,8,9
    fcnjax-study operators_guided --seeds=0,1,2,3,4,5,6,7,8,9

One encoder (the small BN VGG, 4 pools, 64x64 shapes/study images) and one
decoder of x2 stages, each *upsample -> conv-BN-ReLU*
(`models.UpsamplingDecoderNet`):
* `operators`, skip-free: the operator is the only difference between arms
  (nearest, bed of nails, max-unpool, bilinear, transpose conv with bilinear
  and random init, pixel shuffle, CARAFE, DySample-S+, IndexNet). IndexNet
  also changes the encoder: its pools pool index-weighted, where every other
  arm max-pools.
* `operators_guided`: the same decoder with the encoder's map at each stride
  concatenated after each x2 stage in every arm (skips=True, U-Net style);
  the guided operators (FADE, SAPA-B) also take that map as guidance, so the
  same information reaches every arm and only the operator differs
  (bilinear, CARAFE, FADE, SAPA).

Contrasts (primary endpoint: test mIoU; secondary: test BF and Boundary IoU,
each its own Holm family), pre-registered on 2026-12-06 before any full run:
learned transpose conv vs fixed bilinear; bilinear vs random init; IndexNet
vs max-unpool (learned index vs switches; IndexNet's encoder pools
differently); pixel shuffle vs transpose conv; CARAFE vs bilinear; DySample
vs bilinear; dense vs sparse (sparse: bed of nails and max-unpool, the
operators whose declared kind is sparse; dense: the other parameter-free
ones, nearest and bilinear, so that learning is not part of the contrast);
guided: FADE vs CARAFE and SAPA vs bilinear, both with skip fusion.
Collapsed runs (final selection mIoU more than 0.15 below the median of the
arm's other seeds: `stats.collapsed`) are named and kept. The budget
(num_train_steps, capped at 3,000 on CPU) comes from the pilot on the
selection split (`fcnjax-study operators --pilot`); until it is recorded
the base config holds the cap.
"""
from fcnjax.configs import study_config
from fcnjax.models import modern_upsamplers
from fcnjax.studies.spec import Study

DECLARED = "2026-12-06"
UNGUIDED = ("nearest", "bed_of_nails", "max_unpool", "bilinear", "learned", "learned_random",
            "pixel_shuffle", "carafe", modern_upsamplers.STUDY_VARIANTS["dysample"], "indexnet")
GUIDED = ("bilinear", "carafe", "fade", "sapa")


def get_config(skips=False):
  config = study_config(num_train_steps=3000)
  config.model.name = "decoder"
  config.model.upsample = "nearest"
  config.model.backbone = "small"
  config.model.depth = 4  # 4 pools: a 4x4 bottleneck for the 64x64 images
  config.model.skips = skips
  return config


def _pair(a, b):
  return ({a: 1.0, b: -1.0}, a, b)


DYSAMPLE = modern_upsamplers.STUDY_VARIANTS["dysample"]
UNGUIDED_CONTRASTS = {
    "learned vs bilinear (fixed)": _pair("learned", "bilinear"),
    "learned (bilinear init) vs learned_random": _pair("learned", "learned_random"),
    "indexnet vs max_unpool": _pair("indexnet", "max_unpool"),
    "pixel_shuffle vs learned": _pair("pixel_shuffle", "learned"),
    "carafe vs bilinear": _pair("carafe", "bilinear"),
    f"{DYSAMPLE} vs bilinear": _pair(DYSAMPLE, "bilinear"),
    "dense vs sparse (parameter-free)": (
        {"nearest": 0.5, "bilinear": 0.5, "bed_of_nails": -0.5, "max_unpool": -0.5},
        "dense", "sparse"),
}
GUIDED_CONTRASTS = {
    "fade vs carafe (with skips)": _pair("fade", "carafe"),
    "sapa vs bilinear (with skips)": _pair("sapa", "bilinear"),
}

# Published single-run mIoU, SegFormer-B1 on ADE20K (each paper's table; a checkpoint
# chosen on the reported split; experiments/results/operator_costs/README.md),
# quoted beside the costs: not comparable with this study's numbers.
PUBLISHED = {"bilinear": "41.68-42.11", "learned": "40.71", "pixel_shuffle": "41.50",
             "carafe": "42.82", "indexnet": "41.50", DYSAMPLE: "43.3-43.6",
             "fade": "43.06-44.41", "sapa": "43.20"}

STUDY = Study(
    name="operators", config_file=__file__,
    arms={name: {"model.upsample": name} for name in UNGUIDED},
    contrasts=lambda labels: UNGUIDED_CONTRASTS,
    declared={name: DECLARED for name in UNGUIDED_CONTRASTS}, seeds=10, published=PUBLISHED,
    summary="the lecture's and today's operators in the skip-free decoder")
