"""torchvision-layout VGG16 in PyTorch == fcnjax VGG16 after weight conversion."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from fcnjax import models
from fcnjax.commands import convert
from fcnjax.train import assemble, params_io


def torchvision_vgg16():
  """Same modules and indices as torchvision.models.vgg16 (state_dict keys match)."""
  layers, cin = [], 3
  for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
            512, 512, 512, "M"]:
    if v == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
      cin = v
  model = nn.Module()
  model.features = nn.Sequential(*layers)
  model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
  model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                   nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                   nn.Linear(4096, 1000))
  model.forward = lambda x: model.classifier(torch.flatten(model.avgpool(model.features(x)), 1))
  return model


@pytest.fixture(scope="module")
def torch_vgg():
  torch.manual_seed(0)
  model = torchvision_vgg16().eval()
  with torch.no_grad():  # larger biases so every layer matters in the comparison
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        m.bias.normal_(0, 0.05)
  return model


def test_vgg16_logits_match_torch(torch_vgg):
  params = convert.vgg16_from_torch(torch_vgg.state_dict())
  x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    expected = torch_vgg(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  ours = np.asarray(models.VGG16().apply({"params": params}, jnp.asarray(x)))
  scale = np.abs(expected).max()
  np.testing.assert_allclose(ours, expected, atol=2e-4 * scale, rtol=1e-3)


def test_fcn_backbone_reuses_vgg16_params(torch_vgg, tmp_path):
  """Converted weights land in the FCN's backbone (its stride-8 / stride-16
  features equal torch's pool3 / pool4); the FCN's own layers keep their values."""
  params = convert.vgg16_from_torch(torch_vgg.state_dict())
  path = tmp_path / "vgg16.npz"
  params_io.save_npz(params, path)
  fcn = models.build_model(dict(name="fcn", variant="8s", backbone="vgg16", geometry="paper",
                                upsample="bilinear"), 21)
  shapes = jax.eval_shape(lambda: fcn.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  leaves, tree = jax.tree.flatten(shapes["params"])
  target = jax.tree.unflatten(tree, [np.full(s.shape, i + 0.5, s.dtype)
                                     for i, s in enumerate(leaves)])
  merged, copied = assemble.merge_params(target, params_io.load_npz(path))
  assert copied == 2 * 15  # 13 convs + fc6 + fc7, kernel and bias
  for name in ("fc6", "fc7"):
    for p in ("kernel", "bias"):
      np.testing.assert_array_equal(merged["backbone"][name][p], params["backbone"][name][p])
  for name in set(target) - {"backbone"}:  # score_fr, score_pool4, upscore2, ...
    for p in target[name]:
      np.testing.assert_array_equal(merged[name][p], target[name][p])
  x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype(np.float32)
  backbone = models.BACKBONES["vgg16"](dict(geometry="same"))  # floor == ceil pooling at 64
  ours = backbone.apply({"params": merged["backbone"]}, jnp.asarray(x))
  with torch.no_grad():
    features = torch.from_numpy(x.transpose(0, 3, 1, 2))
    pool3 = torch_vgg.features[:17](features)
    pool4 = torch_vgg.features[17:24](pool3)
  for key, ref in (("stride8", pool3), ("stride16", pool4)):
    ref = ref.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours[key], ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())


def test_bad_state_dict_errors():
  with pytest.raises(ValueError, match="missing"):
    convert.vgg16_from_torch({"features.0.weight": np.zeros((64, 3, 3, 3))})
  with pytest.raises(ValueError, match="224x224"):
    models.VGG16().init(jax.random.key(0), jnp.zeros((1, 200, 200, 3)))


def test_load_npz_names_a_file_that_is_not_params(tmp_path):
  bad = tmp_path / "notes.npz"
  bad.write_text("not an archive")
  with pytest.raises(ValueError, match="notes.npz: not a params .npz"):
    params_io.load_npz(bad)
