"""FCN-16s (tiny VGG backbone) on shapes.

    python -m fcnjax.main --config=fcn16s_shapes --workdir=runs/fcn16s_shapes
"""
from fcnjax.config import default_config


def get_config():
  config = default_config()
  config.model.variant = "16s"
  return config
