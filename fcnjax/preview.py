"""`python -m fcnjax.preview`: an alias of `fcnjax.commands.preview` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.preview import main, preview_grid, run  # noqa: F401

if __name__ == "__main__":
  run()
