"""The skip study (`fcnjax.studies.skip`): `fcnjax-study skip [flags]`."""
import sys

from fcnjax import run_study

if __name__ == "__main__":
  sys.argv.insert(1, "skip")
  run_study.run()
