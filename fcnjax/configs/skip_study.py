"""The skip study's base config: FCN (small BN VGG backbone) on shapes/study.

    python experiments/skip_study.py --workdir=runs/skip_study

Same data, splits, batch, optimizer and scoring as `upsampling_study.py`
(`fcnjax.config.study_config`); every arm of the study has the same budget,
fixed by the pilot recorded in experiments/results/pilot/README.md.
"""
from fcnjax.config import study_config


def get_config():
  config = study_config(num_train_steps=1500)
  config.model.name = "fcn"
  config.model.backbone = "small"
  return config
