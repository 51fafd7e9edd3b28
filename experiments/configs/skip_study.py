"""The skip study's base config: FCN (small BN VGG backbone) on shapes.

    python experiments/skip_study.py --workdir=runs/skip_study

Same data, 64x64 crops, batch and optimizer as `upsampling_study.py`, at 600
steps instead of 900 (the FCNs learn faster than the skip-free decoders; the
whole study fits in about 45 minutes on 2 CPU cores). Every run of this study
has the same budget.
"""
from fcnjax.config import default_config


def get_config():
  config = default_config()
  config.model.name = "fcn"
  config.model.backbone = "small"
  config.data.crop_size = 64
  config.num_train_steps = 600
  config.log_every_steps = 50
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 600
  config.keep_checkpoints = 1
  return config
