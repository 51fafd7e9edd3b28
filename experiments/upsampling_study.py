"""The upsampling study (`fcnjax.studies.upsampling`): `fcnjax-study upsampling [flags]`."""
import sys

from fcnjax import run_study

if __name__ == "__main__":
  sys.argv.insert(1, "upsampling")
  run_study.run()
