"""Packaged configs: each module has get_config(); entry points take --config=<name>.
The defaults they override (`_base.py`, not a config itself) are re-exported here."""
from fcnjax.configs._base import (  # noqa: F401
    default_config, mmseg_fcn8s_config, paper_voc_config, study_config)
