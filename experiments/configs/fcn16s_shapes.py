"""Packaged as fcnjax/configs/fcn16s_shapes.py (--config=fcn16s_shapes finds it by name)."""
from fcnjax.configs.fcn16s_shapes import get_config  # noqa: F401
