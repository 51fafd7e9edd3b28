"""The upsampling study (`fcnjax.studies.upsampling`): `fcnjax-study upsampling [flags]`."""
import sys

from fcnjax.commands import study

if __name__ == "__main__":
  sys.argv.insert(1, "upsampling")
  study.run()
