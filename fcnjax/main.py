"""`python -m fcnjax.main`: an alias of `fcnjax.commands.train` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.train import main, run  # noqa: F401

if __name__ == "__main__":
  run()
