"""An alias of `fcnjax.configs` (the default configs live in
fcnjax/configs/_base.py), for config files that import `fcnjax.config`."""
from fcnjax.configs._base import (  # noqa: F401
    default_config, mmseg_fcn8s_config, paper_voc_config, study_config)
