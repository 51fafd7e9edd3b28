"""The budget pilot: `fcnjax-study NAME --pilot [flags]` (NAME from --study, default
upsampling), e.g. python experiments/pilot.py --study=skip --arms=fcn8s."""
import sys

from fcnjax.commands import study

if __name__ == "__main__":
  study = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--study=")), "upsampling")
  sys.argv = [sys.argv[0], study, "--pilot"] + [a for a in sys.argv[1:]
                                                 if not a.startswith("--study=")]
  study.run()
