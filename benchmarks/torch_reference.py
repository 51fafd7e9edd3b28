"""A PyTorch FCN-32s/16s/8s equal to fcnjax's FCN (VGG backbone, 'same' geometry).

The twin `torch_bench.py` times fcnjax against, and the tests compare with:
3x3 convs padding 1 + ReLU, 2x2 max pooling with ceil_mode, fc6 k x k conv
padding k//2 (SAME), fc7 1x1, 1x1 score layers, learned transpose-conv
upsampling (kernel 2f, stride f, padding f/2, no bias) with top-left crops to
the skip maps and to the input size. Dropout is left out (the bench runs
with dropout_rate 0). Layout NCHW, as PyTorch users run it. `build_resnet`:
torchvision's ResNet layout and state-dict names, for models/resnet.py's tests.

Outside the package (test and benchmark code). Its functions need torch
(not a dependency of fcnjax; `torch_available()`), imported inside them.
"""
import importlib.util

import numpy as np


def torch_available():
  return importlib.util.find_spec("torch") is not None


SKIPS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}
UP_NAMES = {"pool4": "upscore2", "pool3": "upscore_pool4"}
FINAL = {"32s": ("upscore", 32), "16s": ("upscore16", 16), "8s": ("upscore8", 8)}


def build(num_classes, variant="8s", stage_sizes=(2, 2, 3, 3, 3),
          widths=(64, 128, 256, 512, 512), fc_width=4096, fc6_kernel=7):
  """The PyTorch FCN (a torch.nn.Module): (N, 3, H, W) -> logits (N, C, H, W).
  Its parameter names mirror fcnjax's tree (backbone.conv1_1, score_fr, ...)."""
  import torch
  from torch import nn

  class TorchFCN(nn.Module):
    def __init__(self):
      super().__init__()
      layers, cin = {}, 3
      for s, (n, width) in enumerate(zip(stage_sizes, widths), start=1):
        for i in range(1, n + 1):
          layers[f"conv{s}_{i}"] = nn.Conv2d(cin, width, 3, padding=1)
          cin = width
      layers["fc6"] = nn.Conv2d(cin, fc_width, fc6_kernel, padding=fc6_kernel // 2)
      layers["fc7"] = nn.Conv2d(fc_width, fc_width, 1)
      self.backbone = nn.ModuleDict(layers)
      head = {"score_fr": nn.Conv2d(fc_width, num_classes, 1)}
      for skip in SKIPS[variant]:
        head[f"score_{skip}"] = nn.Conv2d(widths[int(skip[-1]) - 1], num_classes, 1)
        head[UP_NAMES[skip]] = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1,
                                                  bias=False)
      name, f = FINAL[variant]
      head[name] = nn.ConvTranspose2d(num_classes, num_classes, 2 * f, f, f // 2, bias=False)
      self.head = nn.ModuleDict(head)

    def forward(self, x):
      h, w = x.shape[2:]
      pools = {}
      for s, n in enumerate(stage_sizes, start=1):
        for i in range(1, n + 1):
          x = torch.relu(self.backbone[f"conv{s}_{i}"](x))
        x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        pools[f"pool{s}"] = x
      x = torch.relu(self.backbone["fc6"](x))
      x = torch.relu(self.backbone["fc7"](x))
      score = self.head["score_fr"](x)
      for skip in SKIPS[variant]:
        skip_score = self.head[f"score_{skip}"](pools[skip])
        score = self.head[UP_NAMES[skip]](score)
        score = score[:, :, :skip_score.shape[2], :skip_score.shape[3]] + skip_score
      return self.head[FINAL[variant][0]](score)[:, :, :h, :w]

  return TorchFCN()


def load_params(model, params):
  """Copies an fcnjax FCN param tree into `build()`'s model, in place.
  Conv kernels HWIO -> OIHW; transpose-conv kernels (k, k, in, out) -> (in, out, k, k)."""
  import torch
  flat = {}
  for name, module in model.named_modules():
    if not hasattr(module, "weight"):
      continue
    path = name.split(".")
    tree = params["backbone"] if path[0] == "backbone" else params
    leaf = tree[path[1]]
    order = (2, 3, 0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else (3, 2, 0, 1)
    flat[f"{name}.weight"] = np.asarray(leaf["kernel"]).transpose(order)
    if module.bias is not None:
      flat[f"{name}.bias"] = np.asarray(leaf["bias"])
  state = {k: torch.from_numpy(np.array(v)) for k, v in flat.items()}
  model.load_state_dict(state, strict=True)
  return model


def train_step_fn(model, lr=1e-3, momentum=0.9, ignore_index=255):
  """A step(images NCHW, labels NHW) -> loss: SGD with momentum on the per-pixel
  cross-entropy mean over non-ignored pixels, as fcnjax's train step."""
  import torch
  opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

  def step(images, labels):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels, ignore_index=ignore_index)
    loss.backward()
    opt.step()
    return loss

  return step


def build_resnet(stage_sizes=(2, 2, 2, 2), bottleneck=False):
  """A PyTorch ResNet in torchvision's layout and state-dict names (conv1, bn1,
  layer1.0.conv1, layer1.0.downsample.0, ...), without the classifier; written
  here so that tests need not install torchvision. forward: (N, 3, H, W) ->
  {'stride2', 'stride4', 'stride8', 'stride16', 'stride32'} maps, NCHW."""
  import torch
  from torch import nn

  class Block(nn.Module):
    def __init__(self, cin, width, stride):
      super().__init__()
      self.convs = ([(1, 1, width), (3, stride, width), (1, 1, 4 * width)] if bottleneck
                    else [(3, stride, width), (3, 1, width)])
      for i, (k, s, c) in enumerate(self.convs, start=1):
        setattr(self, f"conv{i}", nn.Conv2d(cin, c, k, s, k // 2, bias=False))
        setattr(self, f"bn{i}", nn.BatchNorm2d(c))
        cin = c
      self.downsample = None
      if stride != 1 or cin != self.conv1.in_channels:
        self.downsample = nn.Sequential(
            nn.Conv2d(self.conv1.in_channels, cin, 1, stride, bias=False), nn.BatchNorm2d(cin))

    def forward(self, x):
      y = x
      for i in range(1, len(self.convs) + 1):
        y = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(y))
        y = torch.relu(y) if i < len(self.convs) else y
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  class TorchResNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      cin = 64
      for i, n in enumerate(stage_sizes):
        blocks = []
        for j in range(n):
          blocks.append(Block(cin, 64 * 2 ** i, 2 if (i > 0 and j == 0) else 1))
          cin = blocks[-1].convs[-1][2]
        setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
      features = {"stride2": torch.relu(self.bn1(self.conv1(x)))}
      x = nn.functional.max_pool2d(features["stride2"], 3, 2, 1)
      for i in range(len(stage_sizes)):
        x = getattr(self, f"layer{i + 1}")(x)
        features[f"stride{4 * 2 ** i}"] = x
      return features

  return TorchResNet()
