"""Packaged as fcnjax/configs/fcn16s_voc.py (--config=fcn16s_voc finds it by name)."""
from fcnjax.configs.fcn16s_voc import get_config  # noqa: F401
