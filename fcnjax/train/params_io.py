"""Params as a .npz of flattened 'a/b/c' keys: the file config.init_from reads
and `python -m fcnjax.commands.convert` writes."""
import numpy as np


def save_npz(params, path):
  """Flattened 'a/b/c' keys, the format config.init_from reads (`load_npz`)."""
  from flax import traverse_util
  flat = traverse_util.flatten_dict(params, sep="/")
  np.savez(path, **{k: np.asarray(v) for k, v in flat.items()})


def load_npz(path):
  """The nested params dict `save_npz` wrote; ValueError naming a file that is not one."""
  from flax import traverse_util
  try:
    with np.load(path) as f:
      return traverse_util.unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})
  except (ValueError, OSError) as e:
    raise ValueError(f"{path}: not a params .npz written by fcnjax-convert ({e})") from None
