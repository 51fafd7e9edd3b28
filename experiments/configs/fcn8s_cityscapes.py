"""Packaged as fcnjax/configs/fcn8s_cityscapes.py (--config=fcn8s_cityscapes finds it by name)."""
from fcnjax.configs.fcn8s_cityscapes import get_config  # noqa: F401
