"""`python -m fcnjax.bench`: an alias of `fcnjax.commands.bench` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.bench import define_flags, main, run  # noqa: F401

if __name__ == "__main__":
  run()
