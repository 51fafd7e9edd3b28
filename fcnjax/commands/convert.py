"""torchvision VGG16 weights -> a .npz for config.init_from.

    fcnjax-convert --torch_weights=vgg16-397923af.pth --out=vgg16.npz

The conversion is `models.torch_weights` (`vgg16_from_torch`, and
`resnet_from_torch` for torchvision ResNets, library only; both re-exported
here); the .npz format is `train.params_io` (save_npz / load_npz). Reading a
.pth needs PyTorch (pip install torch); nothing is downloaded.
"""
from absl import flags

from fcnjax.models.torch_weights import (load_torch_state_dict, resnet_from_torch,  # noqa: F401
                                         vgg16_from_torch)
from fcnjax.runtime import cli
from fcnjax.train.params_io import save_npz


def convert_file(torch_weights, out):
  """torchvision vgg16 .pth -> fcnjax .npz (`vgg16_from_torch`, `save_npz`)."""
  state_dict = load_torch_state_dict(torch_weights)
  if not isinstance(state_dict, dict):
    raise ValueError(f"--torch_weights={torch_weights}: holds a {type(state_dict).__name__}, "
                     "not a state_dict")
  try:
    params = vgg16_from_torch(state_dict)
  except ValueError as e:
    raise ValueError(f"--torch_weights={torch_weights}: {e}") from None
  save_npz(params, out)


def main(argv):
  del argv
  convert_file(flags.FLAGS.torch_weights, flags.FLAGS.out)
  print(f"wrote {flags.FLAGS.out}")


def run():
  flags.DEFINE_string("torch_weights", None, "torchvision vgg16 .pth state_dict file.")
  flags.DEFINE_string("out", "vgg16.npz", "Output .npz for --config.init_from.")
  flags.mark_flag_as_required("torch_weights")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
