"""FCN-8s (small BN VGG backbone) on the embedded shapes dataset: the main job.

    python -m fcnjax.commands.train --config=fcn8s_shapes --workdir=runs/fcn8s_shapes
"""
from fcnjax.configs import default_config


def get_config():
  config = default_config()
  config.model.variant = "8s"
  return config
