"""The skip study's base config: FCN (small BN VGG backbone) on shapes.

    python experiments/skip_study.py --workdir=runs/skip_study

Same data, 64x64 crops, batch and optimizer as `upsampling_study.py`, at 600
steps instead of 900 (the FCNs learn faster than the skip-free decoders; the
whole study fits in about 45 minutes on 2 CPU cores). Every run of this study
has the same budget.
"""
from fcnjax.config import study_config


def get_config():
  config = study_config(num_train_steps=600)
  config.model.name = "fcn"
  config.model.backbone = "small"
  return config
