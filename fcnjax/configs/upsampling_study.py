"""The upsampling study's base config: the skip-free decoder on shapes/study.

Every x2 decoder stage is *upsample -> conv-BN-ReLU*; the study sweeps
model.upsample over `fcnjax.models.UPSAMPLERS` with paired seeds:

    python experiments/upsampling_study.py --workdir=runs/upsampling_study

Splits, resolution and scoring: `fcnjax.config.study_config` and the
protocol in `fcnjax.studies.study`. The budget (num_train_steps) comes from the
pilot recorded in experiments/results/pilot/README.md. For a GPU,
scale up from here: --config.num_train_steps=... --config.model.backbone=vgg16.
"""
from fcnjax.config import study_config


def get_config():
  config = study_config(num_train_steps=1500)
  config.model.name = "decoder"
  config.model.upsample = "max_unpool"
  config.model.backbone = "small"
  config.model.depth = 4  # 4 pools: a 4x4 bottleneck for the 64x64 images
  return config
