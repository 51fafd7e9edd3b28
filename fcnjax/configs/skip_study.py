"""The skip study's base config (the study itself: `fcnjax.studies.skip`)."""
from fcnjax.studies.skip import get_config  # noqa: F401
