"""Packaged as fcnjax/configs/fcn8s_voc.py (--config=fcn8s_voc finds it by name)."""
from fcnjax.configs.fcn8s_voc import get_config  # noqa: F401
