"""Packaged as fcnjax/configs/fcn32s_voc.py (--config=fcn32s_voc finds it by name)."""
from fcnjax.configs.fcn32s_voc import get_config  # noqa: F401
