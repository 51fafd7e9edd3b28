"""ResNet backbones: torchvision's parameter counts, the converter, parity with a
PyTorch ResNet built by hand in float64, and FCN-8s on resnet18 trained two steps."""
import importlib
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax import configs as config_lib, models
from fcnjax.commands import convert
from fcnjax.studies import experiment
from fcnjax.data import pipeline
from fcnjax.models.resnet import RESNET_SIZES, ResNet
from fcnjax.train import assemble, checkpoint, loop

# torchvision resnet18 / resnet50 without the classifier (fc: 512*1000+1000 and
# 2048*1000+1000 parameters): 11,689,512 - 513,000 and 25,557,032 - 2,049,000.
TORCHVISION_COUNTS = {"resnet18": 11_176_512, "resnet50": 23_508_032}
CHANNELS = {"resnet18": (64, 64, 128, 256, 512), "resnet50": (64, 256, 512, 1024, 2048)}


def _count(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_count_and_feature_shapes(name):
  net = models.BACKBONES[name]({})
  x = jnp.zeros((2, 65, 40, 3))
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  assert _count(variables["params"]) == TORCHVISION_COUNTS[name]
  features = jax.eval_shape(net.apply, variables, x)
  want = {f"stride{s}": (2, -(-65 // s), -(-40 // s), c)
          for s, c in zip((2, 4, 8, 16, 32), CHANNELS[name])}
  assert {k: v.shape for k, v in features.items()} == want


def test_bottleneck_strides_on_its_3x3_conv():
  """torchvision's ResNet v1.5: the first block of layer2..4 halves the map in
  conv2 (3x3), not conv1 (1x1) as in the original paper; the shortcut's 1x1
  conv strides too."""
  net = models.BACKBONES["resnet50"]({})
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  _, state = jax.eval_shape(lambda v: net.apply(v, x, capture_intermediates=True,
                                                mutable=["intermediates"]), variables)
  block = state["intermediates"]["layer2_0"]
  out = {k: block[k]["__call__"][0].shape[1:] for k in
         ("conv1", "conv2", "conv3", "downsample_conv")}
  assert out == {"conv1": (16, 16, 128), "conv2": (8, 8, 128), "conv3": (8, 8, 512),
                 "downsample_conv": (8, 8, 512)}
  assert variables["params"]["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)


@pytest.fixture
def torch_reference(monkeypatch):
  """benchmarks/torch_reference.py (outside the package), imported by name
  with its folder on sys.path, as its scripts import it."""
  pytest.importorskip("torch")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))
  return importlib.import_module("torch_reference")


def _torch_net(torch_reference, name, seed=0):
  """The hand-written torch ResNet, eval mode, with BatchNorm statistics and
  affine parameters away from their (identity) init so they are exercised."""
  import torch
  torch.manual_seed(seed)
  net = torch_reference.build_resnet(**RESNET_SIZES[name]).eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
        m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5)
  return net


def _f32_tolerance(params):
  """Relative error allowed to the float32 net against a float64 reference.

  A K-term float32 sum's rounding errors walk at random, ~sqrt(K) * eps/2 of
  its size in sequential order (the worst common one); the successive convs'
  errors add in quadrature: sqrt(sum_l K_l) * eps/2, K_l = kh * kw * C_in of
  each conv, and 8 such deviations bound the largest output (as
  tests/test_bench.py's f32_rtol). Measured: ~4e-7, 200x below; a wrong stride
  position, padding or layout errs by > 1e-2.
  """
  ks = [np.prod(k.shape[:3]) for k in jax.tree.leaves(params) if k.ndim == 4]
  return float(4 * np.sqrt(np.sum(ks)) * np.finfo(np.float32).eps)


@pytest.mark.parametrize("name", sorted(RESNET_SIZES))
def test_converted_weights_equal_torch_in_eval_mode(name, torch_reference):
  torch = pytest.importorskip("torch")
  net = _torch_net(torch_reference, name)
  params, batch_stats = convert.resnet_from_torch(net.state_dict())
  x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
  got = ResNet(**RESNET_SIZES[name]).apply({"params": params, "batch_stats": batch_stats}, x)
  with torch.no_grad():  # the reference in float64: its own rounding is negligible
    want = net.double()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).double())
  tol = _f32_tolerance(params)
  assert sorted(got) == sorted(want)
  for stride in want:
    ref = want[stride].numpy().transpose(0, 2, 3, 1)
    err = np.abs(np.asarray(got[stride], np.float64) - ref).max() / np.abs(ref).max()
    assert err <= tol, f"{stride}: relative error {err:.2e} > {tol:.2e}"


def test_converter_refuses_other_state_dicts(torch_reference):
  state = _torch_net(torch_reference, "resnet18").state_dict()
  # torchvision checkpoints carry the classifier and counters: dropped
  state["fc.weight"], state["fc.bias"] = np.zeros((1000, 512)), np.zeros(1000)
  params, batch_stats = convert.resnet_from_torch(state)
  assert "fc" not in params and _count(params) == TORCHVISION_COUNTS["resnet18"]
  fcn = models.build_model(dict(name="fcn", variant="8s", backbone="resnet18"), 3)
  target = jax.eval_shape(fcn.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  shapes = lambda tree: jax.tree.map(np.shape, tree)  # what goes under the FCN's 'backbone'
  assert shapes(params) == shapes(target["params"]["backbone"])
  assert shapes(batch_stats) == shapes(target["batch_stats"]["backbone"])
  for broken, match in [
      ({k: v for k, v in state.items() if k != "layer3.0.downsample.1.running_var"},
       "missing.*layer3_0/downsample_bn/var"),
      ({**state, "layer1.0.se.weight": np.zeros((4, 4, 1, 1))}, "layer1.0.se.weight"),
      ({**state, "layer2.0.conv1.weight": np.zeros((128, 64, 1, 1))},
       "wrong shapes.*layer2_0/conv1/kernel")]:
    with pytest.raises(ValueError, match=match):
      convert.resnet_from_torch(broken)


def test_vgg_fields_it_does_not_have_are_refused():
  with pytest.raises(ValueError, match="geometry"):
    models.build_model(dict(name="fcn", backbone="resnet18", geometry="paper"), 3)
  with pytest.raises(ValueError, match="dropout_rate"):
    models.build_model(dict(name="fcn", backbone="resnet50", dropout_rate=0.5), 3)


def _disc_source(data_config, split, limit=None):
  """A bright disc (class 1) on a dark textured background, 64x64."""
  rng = np.random.default_rng(0 if split == "train" else 1)
  yy, xx = np.mgrid[:64, :64]
  examples = []
  for _ in range(limit or 16):
    cy, cx, r = rng.integers(16, 48, 2).tolist() + [int(rng.integers(6, 14))]
    label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
    image = 40 + 160 * label[..., None] + rng.integers(0, 30, (64, 64, 3))
    examples.append((image.astype(np.uint8), label))
  return examples


def test_fcn8s_on_resnet18_trains_two_steps(monkeypatch, tmp_path):
  discs = types.SimpleNamespace(CLASS_NAMES=("background", "disc"), source=_disc_source)
  monkeypatch.setitem(pipeline.DATASETS, "discs", discs)
  config = experiment.with_fields(config_lib.default_config(), {
      "data.name": "discs", "data.crop_size": 64, "data.scale_range": (1.0, 1.0),
      "model.name": "fcn", "model.variant": "8s", "model.backbone": "resnet18",
      "batch_size": 8, "eval_batch_size": 8, "num_train_steps": 2, "log_every_steps": 1,
      "eval_every_steps": 2, "checkpoint_every_steps": 2, "optimizer.warmup_steps": 0})
  scores = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(scores["mean_iou"]) and len(scores["per_class_iou"]) == 2
  model = assemble.build_model(config, pipeline.get_info(config.data))
  init, _ = assemble.create_state(config, model, jax.random.key(0))
  trained = checkpoint.restore_state(str(tmp_path), init, which="latest")
  assert int(trained.step) == 2
  assert _count(init.params["backbone"]) == TORCHVISION_COUNTS["resnet18"]
  assert init.params["score_pool3"]["kernel"].shape == (1, 1, 128, 2)  # layer2
  assert init.params["score_pool4"]["kernel"].shape == (1, 1, 256, 2)  # layer3
  assert init.params["score_fr"]["kernel"].shape == (1, 1, 512, 2)  # layer4
  bn = lambda tree: tree["backbone"]["layer4_1"]["bn2"]
  assert not np.allclose(bn(init.params)["bias"], bn(trained.params)["bias"])  # trained
  assert not np.allclose(bn(init.batch_stats)["var"], bn(trained.batch_stats)["var"])  # BN ran
