"""Packaged as fcnjax/configs/fcn32s_shapes.py (--config=fcn32s_shapes finds it by name)."""
from fcnjax.configs.fcn32s_shapes import get_config  # noqa: F401
