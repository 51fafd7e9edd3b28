"""Packaged as fcnjax/configs/skip_study.py (--config=skip_study finds it by name)."""
from fcnjax.configs.skip_study import get_config  # noqa: F401
