"""The studies `fcnjax-study NAME` runs: {name: spec.Study}, one line each."""
from fcnjax.studies import skip, upsampling

STUDIES = {
    "upsampling": upsampling.STUDY,
    "skip": skip.STUDY,
}
