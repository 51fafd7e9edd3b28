"""Packaged configs: each module has get_config(); entry points take --config=<name>."""
