"""FCN-16s (tiny VGG backbone) on shapes.

    python -m fcnjax.commands.train --config=fcn16s_shapes --workdir=runs/fcn16s_shapes
"""
from fcnjax.configs import default_config


def get_config():
  config = default_config()
  config.model.variant = "16s"
  return config
