"""Packaged as fcnjax/configs/fcn8s_pets.py (--config=fcn8s_pets finds it by name)."""
from fcnjax.configs.fcn8s_pets import get_config  # noqa: F401
