"""Packaged as fcnjax/configs/upsampling_study.py (--config=upsampling_study finds it by name)."""
from fcnjax.configs.upsampling_study import get_config  # noqa: F401
