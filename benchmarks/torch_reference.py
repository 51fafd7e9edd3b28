"""PyTorch twins of fcnjax models: the FCN-32s/16s/8s, the study decoder, a ResNet.

The twins `torch_bench.py` times fcnjax against, and the tests compare with.
`build` (the FCN, VGG backbone, 'same' geometry): 3x3 convs padding 1 + ReLU,
2x2 max pooling with ceil_mode, fc6 k x k conv padding k//2 (SAME), fc7 1x1,
1x1 score layers, learned transpose-conv upsampling (kernel 2f, stride f,
padding f/2, no bias) with top-left crops to the skip maps and to the input
size. Dropout is left out (the bench runs with dropout_rate 0). Layout NCHW,
as PyTorch users run it. `build_decoder`: models/decoder.py's skip-free
decoder on a BatchNorm VGG ('small'), with the nearest or bilinear x2 step.
`build_resnet`: torchvision's ResNet layout and state-dict names, for
models/resnet.py's tests.

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


def _vgg_layers(nn, stage_sizes, widths, bn=None):
  """VGG stages' 3x3 convs (padding 1, with bias) by fcnjax's names, conv{s}_{i}
  (each followed by bn{s}_{i} = bn(width) where bn is given), and the last width."""
  layers, cin = {}, 3
  for s, (n, width) in enumerate(zip(stage_sizes, widths), start=1):
    for i in range(1, n + 1):
      layers[f"conv{s}_{i}"] = nn.Conv2d(cin, width, 3, padding=1)
      if bn is not None:
        layers[f"bn{s}_{i}"] = bn(width)
      cin = width
  return layers, cin


def build(num_classes, variant="8s", stage_sizes=(2, 2, 3, 3, 3),
          widths=(64, 128, 256, 512, 512), fc_width=4096, fc6_kernel=7):
  """The PyTorch FCN (a torch.nn.Module): (N, 3, H, W) -> logits (N, C, H, W).
  Its parameter names mirror fcnjax's tree (backbone.conv1_1, score_fr, ...)."""
  import torch
  from torch import nn

  class TorchFCN(nn.Module):
    def __init__(self):
      super().__init__()
      layers, cin = _vgg_layers(nn, stage_sizes, widths)
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


# flax BatchNorm as fcnjax's layers use it (VGGBackbone, ConvBNReLU): epsilon
# 1e-5 (flax's default), running stats kept as momentum * old + (1 - momentum)
# * batch with momentum 0.9, i.e. torch's momentum 0.1 (its weight of the batch).
BN_EPS = 1e-5
BN_MOMENTUM = 1 - 0.9
DECODER_UPSAMPLERS = ("nearest", "bilinear")
BILINEAR_IMPLS = ("interpolate", "transpose_conv")


def _bilinear_x2(x, impl):
  """fcnjax's `ops.upsample.bilinear_upsample(x, 2)`, NCHW: the FCN bilinear
  filter (1/4, 3/4, 3/4, 1/4) as a per-channel transpose conv, kernel 4,
  stride 2, padding 1, over a zero border. Inside the map that is
  `F.interpolate(mode='bilinear', align_corners=False)` (half-pixel centres);
  on the outer row / column it is not: interpolate clamps (y[0] = x[0]), the
  transpose conv reads the zero border (y[0] = 3/4 x[0]). impl 'interpolate':
  interpolate on the map padded by one zero on each side, then the padding's
  outputs cropped (torch's dedicated upsample kernel); 'transpose_conv': the
  filter as a grouped `conv_transpose2d`."""
  import torch
  from torch.nn import functional as F
  if impl == "interpolate":
    y = F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=2, mode="bilinear",
                      align_corners=False)
    return y[:, :, 2:-2, 2:-2]
  c = x.shape[1]
  taps = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=x.dtype, device=x.device)
  kernel = torch.outer(taps, taps).expand(c, 1, 4, 4)
  return F.conv_transpose2d(x, kernel, stride=2, padding=1, groups=c)


def _fit(x, size):
  """`models.operator.fit`, NCHW: crop or zero-pad at the bottom / right to size."""
  from torch.nn import functional as F
  x = x[:, :, :size[0], :size[1]]
  if tuple(x.shape[2:]) == tuple(size):
    return x  # no copy where nothing is padded (the bench's 64x64)
  return F.pad(x, (0, size[1] - x.shape[3], 0, size[0] - x.shape[2]))


def build_decoder(num_classes, upsample, widths, stage_sizes, depth, bilinear="interpolate"):
  """The PyTorch twin of fcnjax's decoder model (models/decoder.py) on a
  BatchNorm VGG backbone without skips: (N, 3, H, W) -> logits (N, C, H, W).

  Encoder: the first `depth` stages of widths / stage_sizes, each
  stage_sizes[s] x (3x3 conv padding 1 with bias -> BatchNorm -> ReLU), then
  a 2x2 max pool (ceil mode, as the 'same' geometry). Decoder stage s = depth
  .. 1: `upsample` x2 ('nearest' or fcnjax's 'bilinear', `_bilinear_x2` by
  `bilinear`: 'interpolate' or 'transpose_conv'), cropped / padded to the
  stride 2^(s-1) map's size (the input's for s = 1), then a 3x3 conv padding 1
  without bias -> BatchNorm -> ReLU to widths[s-2] channels (stage 1:
  widths[0]); a 1x1 score conv with bias. BatchNorm: `BN_EPS`, `BN_MOMENTUM`;
  in training it normalises by the biased batch variance as flax does, but
  its running variance takes the unbiased one (n / (n - 1) times flax's,
  n = N*H*W of the layer). Module names mirror fcnjax's tree
  (backbone.conv1_1, backbone.bn1_1, dec4.Conv_0, dec4.BatchNorm_0, score;
  `load_decoder_params`). The bench runs it channels_last.
  """
  import torch
  from torch import nn
  from torch.nn import functional as F
  if upsample not in DECODER_UPSAMPLERS:
    raise ValueError(f"upsample={upsample!r}; the twin has {DECODER_UPSAMPLERS}")
  if bilinear not in BILINEAR_IMPLS:
    raise ValueError(f"bilinear={bilinear!r}; valid: {BILINEAR_IMPLS}")
  if not 1 <= depth <= min(len(widths), len(stage_sizes)):
    raise ValueError(f"depth={depth} for {len(stage_sizes)} stages")
  widths, stage_sizes = tuple(widths[:depth]), tuple(stage_sizes[:depth])

  def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)

  def up(x):
    if upsample == "nearest":
      return F.interpolate(x, scale_factor=2, mode="nearest")
    return _bilinear_x2(x, bilinear)

  class TorchDecoder(nn.Module):
    def __init__(self):
      super().__init__()
      layers, cin = _vgg_layers(nn, stage_sizes, widths, bn)
      self.backbone = nn.ModuleDict(layers)
      for s in range(depth, 0, -1):
        out = widths[s - 2] if s > 1 else widths[0]
        setattr(self, f"dec{s}", nn.ModuleDict(
            {"Conv_0": nn.Conv2d(cin, out, 3, padding=1, bias=False), "BatchNorm_0": bn(out)}))
        cin = out
      self.score = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x):
      sizes = [tuple(x.shape[2:])]  # the pre-pool size of each stage
      for s, n in enumerate(stage_sizes, start=1):
        for i in range(1, n + 1):
          x = torch.relu(self.backbone[f"bn{s}_{i}"](self.backbone[f"conv{s}_{i}"](x)))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        sizes.append(tuple(x.shape[2:]))
      for s in range(depth, 0, -1):
        x = _fit(up(x), sizes[s - 1])
        block = getattr(self, f"dec{s}")
        x = torch.relu(block["BatchNorm_0"](block["Conv_0"](x)))
      return self.score(x)

  return TorchDecoder()


def load_decoder_params(model, variables):
  """Copies fcnjax decoder variables ({'params', 'batch_stats'}) into
  `build_decoder()`'s model, in place: conv kernels HWIO -> OIHW, BatchNorm
  scale / bias -> weight / bias, mean / var -> running_mean / running_var."""
  import torch
  params, stats = variables["params"], variables.get("batch_stats", {})

  def leaf(tree, name):
    for key in name.split("."):
      tree = tree[key]
    return tree

  flat = {}
  for name, module in model.named_modules():
    if isinstance(module, torch.nn.Conv2d):
      p = leaf(params, name)
      flat[f"{name}.weight"] = np.asarray(p["kernel"]).transpose(3, 2, 0, 1)
      if module.bias is not None:
        flat[f"{name}.bias"] = np.asarray(p["bias"])
    elif isinstance(module, torch.nn.BatchNorm2d):
      p, s = leaf(params, name), leaf(stats, name)
      flat.update({f"{name}.weight": p["scale"], f"{name}.bias": p["bias"],
                   f"{name}.running_mean": s["mean"], f"{name}.running_var": s["var"],
                   f"{name}.num_batches_tracked": module.num_batches_tracked.numpy()})
  state = {k: torch.from_numpy(np.array(v)) for k, v in flat.items()}
  model.load_state_dict(state, strict=True)
  return model


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
