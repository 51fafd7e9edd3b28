"""`python -m fcnjax.convert`: an alias of `fcnjax.commands.convert` (the entry
points live in fcnjax/commands/)."""
from fcnjax.commands.convert import (  # noqa: F401
    convert_file, load_torch_state_dict, main, resnet_from_torch, run, vgg16_from_torch)

if __name__ == "__main__":
  run()
