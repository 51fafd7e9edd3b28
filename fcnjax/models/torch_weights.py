"""torchvision weights -> fcnjax params (numpy), no download.

`vgg16_from_torch`: conv weights OIHW -> HWIO; classifier.0 (4096, 25088),
flattened by torch in (C, H, W) order, -> a (7, 7, 512, 4096) fc6 conv
kernel; classifier.3 -> a (1, 1, 4096, 4096) fc7 kernel; classifier.6 ->
fc8 Dense. `resnet_from_torch`: a torchvision resnet18 / resnet50 state dict
(convs OIHW -> HWIO, BatchNorm into params and batch_stats). Reading a .pth
(`load_torch_state_dict`) needs PyTorch (pip install torch).
`python -m fcnjax.commands.convert` writes a VGG16 .npz for config.init_from.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fcnjax.models.resnet import ResNet


# torchvision vgg16 `features` indices of the 13 convolutions, in order.
FEATURE_CONVS = {0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2", 10: "conv3_1",
                 12: "conv3_2", 14: "conv3_3", 17: "conv4_1", 19: "conv4_2", 21: "conv4_3",
                 24: "conv5_1", 26: "conv5_2", 28: "conv5_3"}
EXPECTED_KEYS = ({f"features.{i}.{p}" for i in FEATURE_CONVS for p in ("weight", "bias")} |
                 {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")})


def _np(v):
  return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def vgg16_from_torch(state_dict):
  """torchvision vgg16 state_dict (tensors or arrays) -> VGG16 params (numpy).

  Tree: {'backbone': {conv1_1..conv5_3, fc6, fc7}, 'fc8': {...}}; the FCN's
  'backbone' subtree has the same layout.
  """
  keys = set(state_dict)
  missing, unexpected = EXPECTED_KEYS - keys, keys - EXPECTED_KEYS
  if missing or unexpected:
    raise ValueError(f"not a torchvision vgg16 state_dict: missing {sorted(missing)}, "
                     f"unexpected {sorted(unexpected)}")
  sd = {k: _np(v) for k, v in state_dict.items()}
  backbone = {}
  for i, name in FEATURE_CONVS.items():
    w = sd[f"features.{i}.weight"]
    if w.ndim != 4 or w.shape[2:] != (3, 3):
      raise ValueError(f"features.{i}.weight: expected (out, in, 3, 3), got {w.shape}")
    backbone[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": sd[f"features.{i}.bias"]}
  fc6 = sd["classifier.0.weight"]
  if fc6.shape != (4096, 512 * 7 * 7):
    raise ValueError(f"classifier.0.weight: expected (4096, 25088), got {fc6.shape}")
  backbone["fc6"] = {"kernel": fc6.reshape(4096, 512, 7, 7).transpose(2, 3, 1, 0),
                     "bias": sd["classifier.0.bias"]}
  fc7 = sd["classifier.3.weight"]
  backbone["fc7"] = {"kernel": fc7.T[None, None], "bias": sd["classifier.3.bias"]}
  fc8 = {"kernel": sd["classifier.6.weight"].T, "bias": sd["classifier.6.bias"]}
  return {"backbone": backbone, "fc8": fc8}


def _resnet_target(parts):
  """torchvision key parts -> (module path in models.resnet, is_bn, leaf).

  'bn1.weight' -> (('bn1',), True, 'weight'); 'layer1.0.conv2.weight' ->
  (('layer1_0', 'conv2'), False, 'weight'); 'layer2.0.downsample.1.bias' ->
  (('layer2_0', 'downsample_bn'), True, 'bias'). None for a key it does not know.
  """
  *names, leaf = parts
  if len(names) == 1 and names[0] in ("conv1", "bn1"):
    return (names[0],), names[0] == "bn1", leaf
  if len(names) >= 3 and names[0].startswith("layer") and names[1].isdigit():
    block = f"{names[0]}_{names[1]}"
    if names[2:] in (["downsample", "0"], ["downsample", "1"]):
      is_bn = names[3] == "1"
      return (block, "downsample_bn" if is_bn else "downsample_conv"), is_bn, leaf
    if len(names) == 3 and names[2][:-1] in ("conv", "bn"):
      return (block, names[2]), names[2].startswith("bn"), leaf
  return None


BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def _check_resnet(variables):
  """ValueError unless `variables` has exactly the tree and shapes of a torchvision
  ResNet with the same number of blocks per layer (read from the keys)."""
  flat = traverse_util.flatten_dict(variables, sep="/")
  modules = {k.split("/")[1] for k in flat}  # 'conv1', 'bn1', 'layer{i}_{j}'
  sizes = tuple(sum(m.startswith(f"layer{i}_") for m in modules) for i in range(1, 5))
  bottleneck = any("/conv3/" in k for k in flat)
  net = ResNet(stage_sizes=sizes, bottleneck=bottleneck)
  want = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  want = {k: v.shape for k, v in traverse_util.flatten_dict(want, sep="/").items()}
  got = {k: v.shape for k, v in flat.items()}
  if got != want:
    wrong = sorted(k for k in got.keys() & want.keys() if got[k] != want[k])
    raise ValueError(f"not a torchvision resnet state_dict (blocks per layer {sizes}): "
                     f"missing {sorted(want.keys() - got.keys())}, unexpected "
                     f"{sorted(got.keys() - want.keys())}, wrong shapes "
                     f"{[(k, got[k], want[k]) for k in wrong]}")


def resnet_from_torch(state_dict):
  """torchvision resnet18 / resnet50 state_dict -> (params, batch_stats) of
  `models.resnet.ResNet` (numpy; the FCN keeps them under 'backbone').

  Conv weights OIHW -> HWIO kernels; BatchNorm weight / bias -> params scale /
  bias, running_mean / running_var -> batch_stats mean / var. The classifier
  (fc.*) and num_batches_tracked counters are dropped.
  """
  variables = {"params": {}, "batch_stats": {}}
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
      continue
    target = _resnet_target(parts)
    if target is None or target[2] not in (BN_LEAVES if target[1] else ("weight",)):
      raise ValueError(f"not a torchvision resnet state_dict: unexpected key {key!r}")
    path, is_bn, leaf = target
    collection, name = BN_LEAVES[leaf] if is_bn else ("params", "kernel")
    array = _np(value)
    if not is_bn:
      if array.ndim != 4:
        raise ValueError(f"{key}: expected a (out, in, kh, kw) conv weight, got {array.shape}")
      array = array.transpose(2, 3, 1, 0)
    tree = variables[collection]
    for p in path:
      tree = tree.setdefault(p, {})
    tree[name] = array
  _check_resnet(variables)
  return variables["params"], variables["batch_stats"]


def load_torch_state_dict(path):
  """torch.load of a .pth on the CPU; errors name --torch_weights and the file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--torch_weights={path}: no such file (a torchvision "
                            "vgg16 .pth, e.g. vgg16-397923af.pth)")
  try:
    import torch
  except ImportError:
    raise ImportError("reading a .pth needs PyTorch: pip install torch") from None
  try:
    return torch.load(path, map_location="cpu")
  except Exception as e:  # noqa: BLE001  torch raises pickle, zip and runtime errors
    first = (str(e).strip().splitlines() or [""])[0][:200]  # torch's messages run long
    raise ValueError(f"--torch_weights={path}: not a readable PyTorch file "
                     f"({type(e).__name__}: {first})") from None
