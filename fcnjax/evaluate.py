"""`python -m fcnjax.evaluate`: an alias of `fcnjax.commands.evaluate` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.evaluate import main, run  # noqa: F401

if __name__ == "__main__":
  run()
