"""Packaged as fcnjax/configs/fcn8s_shapes.py (--config=fcn8s_shapes finds it by name)."""
from fcnjax.configs.fcn8s_shapes import get_config  # noqa: F401
