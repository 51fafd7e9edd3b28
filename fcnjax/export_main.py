"""`python -m fcnjax.export_main`: an alias of `fcnjax.commands.export` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.export import main, run  # noqa: F401

if __name__ == "__main__":
  run()
