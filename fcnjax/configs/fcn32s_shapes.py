"""FCN-32s (tiny VGG backbone) on shapes.

    python -m fcnjax.commands.train --config=fcn32s_shapes --workdir=runs/fcn32s_shapes
"""
from fcnjax.configs import default_config


def get_config():
  config = default_config()
  config.model.variant = "32s"
  return config
