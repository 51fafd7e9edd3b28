"""The studies `fcnjax-study NAME` runs: {name: spec.Study}, one line each."""
from fcnjax.studies import operators, operators_guided, skip, upsampling

STUDIES = {
    "upsampling": upsampling.STUDY,
    "skip": skip.STUDY,
    "operators": operators.STUDY,
    "operators_guided": operators_guided.STUDY,
}
