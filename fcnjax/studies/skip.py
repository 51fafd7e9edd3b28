"""The skip study: FCN-32s / 16s / 8s, FCN-8s's upsamplers, FCN-8s vs SegNet vs DeconvNet.

    fcnjax-study skip --workdir=runs/skip_study

Arms (each with every seed, paired):
  fcn32s / fcn16s / fcn8s with learned (bilinear-initialised) upsamplers:
    the analogue of the FCN paper's Table 2;
  fcn8s with bilinear, nearest, bed_of_nails and max_unpool as its
    upsamplers (the same operator code as the upsampling study's decoder):
    FCN's last layer has nothing after it, so bed of nails leaves 63 of
    every 64 logits at the bias and cannot learn there; max-unpooling is as
    sparse, with each window's scores at the offset most of the pool's
    channels chose rather than at its top-left;
  segnet and deconvnet (switch-unpooling decoders) on the same encoder widths:
    SegNet with 4 pools (a 4x4 bottleneck), DeconvNet with 3 (an 8x8
    bottleneck for its 7x7 fc6, as the reference's 7x7 fc6 on a 7x7 pool5);
    both chosen by the pilot on the selection split.
Pre-registered contrasts (test mIoU): 16s vs 32s, 8s vs 16s, learned vs
fixed bilinear in FCN-8s, dense vs sparse (bed of nails) in FCN-8s,
max-unpooling vs bed of nails in FCN-8s (do the switches place the sparse
scores better than the block's top-left?), FCN-8s vs SegNet and vs
DeconvNet. Protocol, tables and figures: `fcnjax.studies.study`.
"""
from fcnjax.configs import study_config
from fcnjax.studies.spec import Study


def get_config():
  """FCN (small BN VGG backbone) on shapes/study: the same data, splits, batch,
  optimizer and scoring as the upsampling study (`fcnjax.configs.study_config`)."""
  config = study_config(num_train_steps=1500)
  config.model.name = "fcn"
  config.model.backbone = "small"
  return config


ARMS = {
    "fcn32s": {"model.name": "fcn", "model.variant": "32s"},
    "fcn16s": {"model.name": "fcn", "model.variant": "16s"},
    "fcn8s": {"model.name": "fcn", "model.variant": "8s"},
    "fcn8s_bilinear": {"model.name": "fcn", "model.upsample": "bilinear"},
    "fcn8s_nearest": {"model.name": "fcn", "model.upsample": "nearest"},
    "fcn8s_bed_of_nails": {"model.name": "fcn", "model.upsample": "bed_of_nails"},
    "fcn8s_max_unpool": {"model.name": "fcn", "model.upsample": "max_unpool"},
    "segnet": {"model.name": "segnet", "model.depth": 4},
    "deconvnet": {"model.name": "deconvnet", "model.depth": 3},
}
DENSE = ("fcn8s", "fcn8s_bilinear", "fcn8s_nearest")
CONTRASTS = {
    "fcn16s vs fcn32s": ({"fcn16s": 1.0, "fcn32s": -1.0}, "fcn16s", "fcn32s"),
    "fcn8s vs fcn16s": ({"fcn8s": 1.0, "fcn16s": -1.0}, "fcn8s", "fcn16s"),
    "fcn8s learned vs bilinear (fixed)": (
        {"fcn8s": 1.0, "fcn8s_bilinear": -1.0}, "learned", "bilinear"),
    "fcn8s dense vs sparse": ({**{a: 1 / len(DENSE) for a in DENSE},
                               "fcn8s_bed_of_nails": -1.0}, "dense", "sparse"),
    "fcn8s max-unpool vs bed of nails": (
        {"fcn8s_max_unpool": 1.0, "fcn8s_bed_of_nails": -1.0}, "max_unpool", "bed_of_nails"),
    "fcn8s vs segnet": ({"fcn8s": 1.0, "segnet": -1.0}, "fcn8s", "segnet"),
    "fcn8s vs deconvnet": ({"fcn8s": 1.0, "deconvnet": -1.0}, "fcn8s", "deconvnet"),
}


STUDY = Study(
    name="skip", config_file=__file__, arms=ARMS, contrasts=lambda labels: CONTRASTS,
    declared={**{name: "2026-12-01" for name in CONTRASTS}},
    summary="FCN-32s/16s/8s, FCN-8s's upsamplers, FCN-8s vs SegNet vs DeconvNet")
