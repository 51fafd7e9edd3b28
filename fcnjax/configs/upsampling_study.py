"""The upsampling study's base config (the study itself: `fcnjax.studies.upsampling`)."""
from fcnjax.studies.upsampling import get_config  # noqa: F401
