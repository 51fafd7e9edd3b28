"""`python -m fcnjax.run_study`: an alias of `fcnjax.commands.study` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.study import MODULE, main, run  # noqa: F401

if __name__ == "__main__":
  run()
