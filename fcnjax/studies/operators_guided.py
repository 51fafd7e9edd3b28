"""The operator study's guided context (see `fcnjax.studies.operators`).

    fcnjax-study operators_guided --seeds=0,1,2,3,4,5,6,7,8,9

The decoder with the encoder's map at each stride concatenated after each x2
stage in every arm; FADE and SAPA-B also take it as guidance.
"""
from fcnjax.studies import operators
from fcnjax.studies.spec import Study


def get_config():
  return operators.get_config(skips=True)


STUDY = Study(
    name="operators_guided", config_file=__file__,
    arms={name: {"model.upsample": name} for name in operators.GUIDED},
    contrasts=lambda labels: operators.GUIDED_CONTRASTS,
    declared={name: operators.DECLARED for name in operators.GUIDED_CONTRASTS}, seeds=10,
    published=operators.PUBLISHED,
    summary="bilinear, CARAFE, FADE, SAPA with skip fusion in every arm")
