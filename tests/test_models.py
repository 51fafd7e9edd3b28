"""Model shapes, fully-convolutional invariance, parameter counts, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax import models
from fcnjax.models import upsamplers


def _count(tree):
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _shape_and_params(model, shape):
  x = jnp.zeros(shape)
  out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
  return out.shape, _count(params)


FCN_CASES = [(v, up, "same") for v in ("32s", "16s", "8s")
             for up in ("learned", "bilinear", "nearest", "bed_of_nails", "max_unpool")]
FCN_CASES += [(v, up, "paper") for v in ("32s", "16s", "8s") for up in ("learned", "bilinear")]


@pytest.mark.parametrize("variant,upsample,geometry", FCN_CASES)
def test_fcn_output_is_input_size_and_params_do_not_depend_on_it(variant, upsample, geometry):
  model = models.build_model(dict(name="fcn", variant=variant, backbone="tiny",
                                  upsample=upsample, geometry=geometry), 5)
  counts = set()
  for shape in [(2, 97, 131, 3), (1, 64, 64, 3), (1, 33, 40, 3)]:
    out, count = _shape_and_params(model, shape)
    assert out == shape[:3] + (5,)
    counts.add(count)
  assert len(counts) == 1


@pytest.mark.parametrize("name", ["segnet", "deconvnet"])
def test_encoder_decoder_shapes(name):
  model = models.build_model(dict(name=name, backbone="small"), 4)
  for shape in [(2, 97, 131, 3), (1, 64, 64, 3)]:
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    assert "batch_stats" in variables
    y, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.shape == shape[:3] + (4,) and np.isfinite(np.asarray(y)).all()
    assert model.apply(variables, x).shape == y.shape
    # Training normalises by the batch's statistics after every conv, and ReLU and
    # max pooling commute with a positive scale: the net ignores the input's scale
    # (x4 is exact in float), but for BatchNorm's epsilon 1e-5 next to the first
    # layer's batch variance (~1): a relative change of ~5e-6 there, which the
    # ~20 layers after it may amplify up to ~20x. Evaluation uses the running statistics.
    y4, _ = model.apply(variables, 4 * x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y4, y, rtol=0, atol=1e-4 * np.abs(y).max())
    assert not np.allclose(model.apply(variables, 4 * x), model.apply(variables, x))
  with pytest.raises(ValueError, match="smaller"):
    model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def _reference_fcn_params(variant, num_classes=21):
  """The Caffe voc-fcn{32,16,8}s nets, layer by layer (weights + biases)."""
  conv = lambda k, cin, cout, bias=True: k * k * cin * cout + (cout if bias else 0)
  vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
  total = sum(conv(3, a, b) for a, b in vgg)
  total += conv(7, 512, 4096) + conv(1, 4096, 4096)  # fc6, fc7
  total += conv(1, 4096, num_classes)  # score_fr
  deconv = lambda k: conv(k, num_classes, num_classes, bias=False)
  if variant == "32s":
    return total + deconv(64)
  total += deconv(4) + conv(1, 512, num_classes)  # upscore2, score_pool4
  if variant == "16s":
    return total + deconv(32)
  return total + deconv(4) + conv(1, 256, num_classes) + deconv(16)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_vgg16_fcn_parameter_counts_match_reference_nets(variant):
  model = models.build_model(dict(name="fcn", variant=variant, backbone="vgg16",
                                  upsample="learned", geometry="paper"), 21)
  _, count = _shape_and_params(model, (1, 64, 64, 3))
  assert count == _reference_fcn_params(variant)
  if variant == "8s":
    assert abs(count - 134.5e6) < 0.1e6


def test_bf16_compute_runs():
  config = dict(name="fcn", variant="8s", backbone="tiny", zero_init_score=False)
  model = models.build_model(config, 3, dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 40, 40, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  y = np.asarray(model.apply(variables, x))
  assert y.shape == (1, 40, 40, 3) and y.dtype == np.float32
  # Against the float32 model on the same weights: each of its ~12 layers rounds
  # its inputs and weights to bfloat16 (eps 2^-7, XLA sums in float32), errors of
  # random sign adding in quadrature: 4 sqrt(12) eps/2 of the largest score.
  want = np.asarray(models.build_model(config, 3).apply(variables, x))
  err = np.abs(y - want).max() / np.abs(want).max()
  assert 0 < err <= 4 * np.sqrt(12) * 2.0 ** -8, err


def test_learned_upsample_starts_bilinear_and_reproduces_a_ramp():
  up = upsamplers.TransposeConvUpsample(4)
  ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[None, :, None, None], (1, 8, 8, 2))
  variables = up.init(jax.random.key(0), ramp)
  y = np.asarray(up.apply(variables, ramp))
  assert y.shape == (1, 32, 32, 2)
  # Value i sits at the centre of its 4-pixel block (position 4i + 1.5).
  inside = np.arange(6, 26)
  np.testing.assert_allclose(y[0, inside, 5, 0], (inside - 1.5) / 4, atol=1e-5)
  assert not jax.tree.leaves(upsamplers.BilinearUpsample(4).init(jax.random.key(0), ramp))


def test_same_geometry_constant_scores_stay_constant():
  """Alignment: a constant score map upsamples to the same constant inside."""
  for name in ("bilinear", "nearest"):
    up = upsamplers.UPSAMPLERS[name](8)
    x = jnp.full((1, 4, 5, 3), 2.5)
    y = np.asarray(up.apply(up.init(jax.random.key(0), x), x))
    np.testing.assert_allclose(y[0, 4:-4, 4:-4], 2.5, rtol=1e-6)


def test_errors_name_the_option():
  with pytest.raises(ValueError, match="upsample"):
    models.build_model(dict(name="fcn", upsample="cubic"), 3)
  with pytest.raises(ValueError, match="backbone"):
    models.build_model(dict(name="fcn", backbone="resnet"), 3)
  with pytest.raises(ValueError, match="model.name"):
    models.build_model(dict(name="transformer"), 3)
  with pytest.raises(ValueError, match="'resnet18' records no pooling switches"):
    models.build_model(dict(name="fcn", backbone="resnet18", upsample="max_unpool"), 3)
  with pytest.raises(ValueError, match="kernel-2f geometry"):
    models.build_model(dict(name="fcn", backbone="tiny", geometry="paper",
                            upsample="max_unpool"), 3)
  unpooling = dict(name="fcn", backbone="tiny", upsample="max_unpool")
  models.MODELS["fcn"].check(unpooling, input_size=32)
  with pytest.raises(ValueError, match=r"crop_size=31: .* needs at least 32x32"):
    models.MODELS["fcn"].check(unpooling, input_size=31)
  models.MODELS["fcn"].check(dict(unpooling, upsample="nearest"), input_size=31)
  model = models.FCN(3, geometry="paper", upsample="nearest",
                     backbone=models.BACKBONES["tiny"](dict(geometry="paper")))
  with pytest.raises(ValueError, match="paper"):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def _reference_encoder_decoder_params(deconvnet, num_classes, encoder_bn):
  """SegNet / DeconvNet layer by layer: the VGG16 encoder's 3x3 convs with bias
  (torchvision's vgg16 / vgg16_bn, encoder_bn: each followed by BatchNorm),
  the decoder's convs without bias, each followed by BatchNorm (scale +
  shift); the score conv with bias."""
  conv_bn = lambda k, cin, cout: k * k * cin * cout + 2 * cout
  vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
  total = sum(9 * a * b + b + (2 * b if encoder_bn else 0) for a, b in vgg)
  decoder = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
             (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
  total += sum(conv_bn(3, a, b) for a, b in decoder)
  if deconvnet:  # fc6, fc7, deconv-fc6 (the decoder ends as SegNet's: see encoder_decoder)
    total += conv_bn(7, 512, 4096) + conv_bn(1, 4096, 4096) + conv_bn(7, 4096, 512)
  return total + 9 * 64 * num_classes + num_classes  # conv1_1_D: 3x3, 64 -> classes


@pytest.mark.parametrize("backbone", ["vgg16", "vgg16_bn"])
@pytest.mark.parametrize("name", ["segnet", "deconvnet"])
def test_encoder_decoder_params_match_the_reference_layers(name, backbone):
  model = models.build_model(dict(name=name, backbone=backbone), 11)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
  assert count == _reference_encoder_decoder_params(name == "deconvnet", 11,
                                                    backbone == "vgg16_bn")


def _decoder(upsample, backbone="small"):
  return models.build_model(dict(name="decoder", backbone=backbone, upsample=upsample, depth=4), 5)


def test_decoder_variants_shapes_and_parameter_counts():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 50, 66, 3)), jnp.float32)
  counts = {}
  for name in ("nearest", "bed_of_nails", "max_unpool", "bilinear", "learned", "learned_random"):
    variables = _decoder(name).init(jax.random.key(0), x)
    y = _decoder(name).apply(variables, x)
    assert y.shape == (2, 50, 66, 5) and np.isfinite(np.asarray(y)).all()
    counts[name] = sum(int(np.size(p)) for p in jax.tree.leaves(variables["params"]))
  free = {counts[n] for n in ("nearest", "bed_of_nails", "max_unpool", "bilinear")}
  assert len(free) == 1
  # one 4x4 C -> C transpose kernel (no bias) per x2 stage, C = 96, 64, 32, 16
  extra = sum(16 * c * c for c in (96, 64, 32, 16))
  assert counts["learned"] == counts["learned_random"] == free.pop() + extra


def test_learned_decoder_starts_as_the_bilinear_decoder():
  """Bilinear initialisation on the channel diagonal == fixed bilinear upsampling."""
  x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 64, 64, 3)), jnp.float32)
  learned = _decoder("learned").init(jax.random.key(0), x)
  fixed = _decoder("bilinear").init(jax.random.key(0), x)
  strip = lambda tree: {k: v for k, v in tree.items() if not k.startswith("up")}
  shared = {"params": strip(learned["params"]), "batch_stats": learned["batch_stats"]}
  assert jax.tree.structure(shared["params"]) == jax.tree.structure(fixed["params"])
  np.testing.assert_allclose(_decoder("learned").apply(learned, x),
                             _decoder("bilinear").apply(shared, x), rtol=1e-4, atol=1e-5)
  random = _decoder("learned_random").init(jax.random.key(0), x)
  assert not np.allclose(_decoder("learned_random").apply(random, x),
                         _decoder("bilinear").apply(shared, x), atol=1e-3)


def _sown(model, x):
  variables = model.init(jax.random.key(0), x)
  _, state = model.apply(variables, x, mutable=["intermediates"])
  return state.get("intermediates", {})


def test_the_encoder_records_switches_only_for_an_operator_that_needs_them():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 32, 32, 3)), jnp.float32)
  assert _sown(_decoder("nearest"), x) == {}
  sown = _sown(_decoder("max_unpool"), x)["backbone"]
  assert sorted(sown) == ["switches1", "switches2", "switches3", "switches4"]
  for s in range(1, 5):  # 1 byte per pooled element: (1, 32 / 2^s, 32 / 2^s, widths[s-1])
    (switches,) = sown[f"switches{s}"]
    assert switches.dtype == jnp.uint8
    assert switches.shape == (1, 32 >> s, 32 >> s, (16, 32, 64, 96)[s - 1])
    assert int(switches.max()) <= 3


def test_encoder_decoders_take_any_backbone_that_provides_what_they_need():
  x = jnp.zeros((2, 64, 64, 3))
  model = _decoder("nearest", backbone="resnet18")  # no switches needed: ResNet's stages
  out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
  assert out.shape == (2, 64, 64, 5)
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  assert "layer3_0" in params["backbone"] and "layer4_0" not in params["backbone"]  # depth 4
  for cfg in (dict(name="segnet"), dict(name="deconvnet"),
              dict(name="decoder", upsample="max_unpool")):
    with pytest.raises(ValueError, match="'resnet18' records no pooling switches"):
      models.build_model(dict(cfg, backbone="resnet18"), 5)
  with pytest.raises(ValueError, match=r"depth=6: backbone 'small' has 5 stride-halving"):
    models.build_model(dict(name="segnet", backbone="small", depth=6), 5)
