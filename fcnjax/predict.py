"""`python -m fcnjax.predict`: an alias of `fcnjax.commands.predict` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.predict import main, predict, run, summary  # noqa: F401

if __name__ == "__main__":
  run()
