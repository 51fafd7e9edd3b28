"""The skip study (`fcnjax.studies.skip`): `fcnjax-study skip [flags]`."""
import sys

from fcnjax.commands import study

if __name__ == "__main__":
  sys.argv.insert(1, "skip")
  study.run()
