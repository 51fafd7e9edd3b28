"""The skip study's base config: FCN (small BN VGG backbone) on shapes.

    python experiments/skip_study.py --workdir=runs/skip_study

Same data, crops, optimizer and budget as `upsampling_study.py`, so the two
tables can be read side by side.
"""
from fcnjax.config import default_config


def get_config():
  config = default_config()
  config.model.name = "fcn"
  config.model.backbone = "small"
  config.data.crop_size = 64
  config.num_train_steps = 900
  config.log_every_steps = 50
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 900
  config.keep_checkpoints = 1
  return config
