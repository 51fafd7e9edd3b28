"""`python -m fcnjax.ablate`: an alias of `fcnjax.commands.ablate` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.ablate import main, run  # noqa: F401

if __name__ == "__main__":
  run()
