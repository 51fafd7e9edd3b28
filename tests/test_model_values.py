"""Model values against independent references: the paper FCN's crops (Caffe
coordinate maps, torch recomputation), the dropout path, the max-unpooling
inside SegNet / DeconvNet (numpy unpool + torch convolutions), and FCN-32s
with each fixed upsampler written from its definition."""
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnjax import models
from fcnjax.models import fcn


def _conv(k, s=1, p=0):
  """Caffe coord map of a conv / pool layer: input = a * output + b."""
  return Fraction(s), Fraction(k - 1, 2) - p


def _deconv(k, s):
  a, b = _conv(k, s)
  return 1 / a, -b / a


def _to_data(layers):
  """Composite map (a, b) from the last layer's output to data coordinates."""
  a, b = Fraction(1), Fraction(0)
  for la, lb in reversed(layers):
    a, b = la * a, la * b + lb
  return a, b


def caffe_offsets():
  """The crop offsets of voc-fcn{32,16,8}s, as Caffe's crop layer derives them."""
  stage = [_conv(3, 1, 1), _conv(2, 2)]
  pool3 = [_conv(3, 1, 100), _conv(3, 1, 1), _conv(2, 2)] + stage * 2
  pool4 = pool3 + stage
  fc7 = pool4 + stage + [_conv(7), _conv(1), _conv(1)]
  up2, up4 = fc7 + [_deconv(4, 2)], fc7 + [_deconv(4, 2), _deconv(4, 2)]
  skip = lambda top, bottom: (_to_data(top)[1] - _to_data(bottom + [_conv(1)])[1]) \
      / _to_data(top)[0]
  final = lambda top, k, s: -_to_data(top + [_deconv(k, s)])[1]
  offsets = {"32s": {"final": final(fc7, 64, 32)},
             "16s": {"stride16": skip(up2, pool4), "final": final(up2, 32, 16)},
             "8s": {"stride16": skip(up2, pool4), "stride8": skip(up4, pool3),
                    "final": final(up4, 16, 8)}}
  assert all(o.denominator == 1 for d in offsets.values() for o in d.values())
  return {v: {k: int(o) for k, o in d.items()} for v, d in offsets.items()}


def test_paper_offsets_are_the_caffe_coordinate_maps():
  assert caffe_offsets() == fcn.PAPER_OFFSETS
  assert caffe_offsets()["8s"] == {"stride16": 5, "stride8": 9, "final": 31}


def _random_variables(model, x, seed=1):
  """Variables of model's structure (no init compile): params N(0, 0.3^2),
  BatchNorm statistics mean 0, var 1."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(seed)
  fill = lambda path, s: (np.full(s.shape, float(path[-1].key == "var"), np.float32)
                          if path[0].key == "batch_stats"
                          else (0.3 * rng.normal(size=s.shape)).astype(np.float32))
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _score(features, p):
  return np.asarray(features) @ np.asarray(p["kernel"])[0, 0] + np.asarray(p["bias"])


def _up(x, kernel, stride, padding=0):
  """Transpose conv in torch: kernel (k, k, in, out) -> weight (in, out, k, k)."""
  w = torch.from_numpy(np.asarray(kernel).transpose(2, 3, 0, 1).copy())
  y = F.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), w, stride=stride,
                         padding=padding)
  return y.numpy().transpose(0, 2, 3, 1)


def _crop(x, offset, like):
  return x[:, offset:offset + like.shape[1], offset:offset + like.shape[2]]


def test_paper_fcn8s_equals_a_torch_recomputation_with_the_caffe_crops():
  config = dict(name="fcn", variant="8s", backbone="tiny", geometry="paper",
                upsample="learned", zero_init_score=False)
  model = models.build_model(config, 3)
  x = np.random.default_rng(0).normal(size=(1, 37, 45, 3)).astype(np.float32)
  params = _random_variables(model, x)["params"]
  got = np.asarray(jax.jit(model.apply)({"params": params}, x))
  feats = jax.jit(models.BACKBONES["tiny"](config).apply)({"params": params["backbone"]}, x)
  off = caffe_offsets()["8s"]
  s = _up(_score(feats["stride32"], params["score_fr"]), params["upscore2"]["kernel"], 2)
  s = s + _crop(_score(feats["stride16"], params["score_pool4"]), off["stride16"], s)
  s = _up(s, params["upscore_pool4"]["kernel"], 2)
  s = s + _crop(_score(feats["stride8"], params["score_pool3"]), off["stride8"], s)
  s = _crop(_up(s, params["upscore8"]["kernel"], 8), off["final"], x)
  assert got.shape == s.shape == (1, 37, 45, 3)
  np.testing.assert_allclose(got, s, rtol=1e-4, atol=1e-4 * np.abs(s).max())


def test_dropout_acts_in_training_only_and_follows_the_key():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
  model = models.build_model(dict(name="fcn", variant="32s", backbone="tiny",
                                  dropout_rate=0.5, zero_init_score=False), 3)
  variables = _random_variables(model, x)
  run = lambda seed: np.asarray(model.apply(variables, x, train=True,
                                            rngs={"dropout": jax.random.key(seed)}))
  evaluation = np.asarray(model.apply(variables, x))
  np.testing.assert_array_equal(run(1), run(1))
  assert not np.allclose(run(1), run(2)) and not np.allclose(run(1), evaluation)
  with pytest.raises(Exception, match="dropout"):  # training needs a dropout key
    model.apply(variables, x, train=True)
  no_drop = models.build_model(dict(name="fcn", variant="32s", backbone="tiny",
                                    dropout_rate=0.0, zero_init_score=False), 3)
  np.testing.assert_array_equal(
      np.asarray(no_drop.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})),
      evaluation)


def _unpool(pooled, switches, size):
  """numpy max-unpool: value (i, j, c) to (2i + o // 2, 2j + o % 2, c), zeros elsewhere."""
  n, h, w, c = pooled.shape
  out = np.zeros((n,) + tuple(size) + (c,), pooled.dtype)
  b, i, j, k = np.indices(pooled.shape)
  out[b, 2 * i + switches // 2, 2 * j + switches % 2, k] = pooled
  return out


def _intermediates(name, x):
  model = models.build_model(dict(name=name, backbone="tiny"), 3)
  variables = _random_variables(model, x)
  apply = jax.jit(lambda v: model.apply(v, x, capture_intermediates=True,
                                        mutable=["intermediates"]))
  _, state = apply(variables)
  return variables["params"], jax.tree.map(np.asarray, state["intermediates"])


def _torch(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_segnet_switches_and_unpooling_by_value():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 32, 32, 3)), jnp.float32)
  params, inter = _intermediates("segnet", x)
  switches = inter["backbone"]["switches1"][0].astype(np.int64)
  # The switches point at each 2x2 window's maximum of relu(conv1_1), the tiny
  # backbone's first pool's input (unique maxima: all-zero windows excluded).
  pooled_input = np.maximum(inter["backbone"]["conv1_1"]["__call__"][0], 0)
  windows = pooled_input.reshape(1, 16, 2, 16, 2, 8)
  windows = windows.transpose(0, 1, 3, 5, 2, 4).reshape(1, 16, 16, 8, 4)
  top2 = np.sort(windows, -1)[..., -2:]
  unique = top2[..., 1] > top2[..., 0]
  assert unique.mean() > 0.5
  np.testing.assert_array_equal(switches[unique], np.argmax(windows, -1)[unique])
  # SegNet's last layer: 3x3 score conv on max_unpool(dec2_1, switches1).
  unpooled = _unpool(inter["dec2_1"]["__call__"][0], switches, (32, 32))
  kernel = np.asarray(params["score"]["kernel"]).transpose(3, 2, 0, 1)  # OIHW
  bias = np.array(params["score"]["bias"])
  expected = F.conv2d(_torch(unpooled), torch.from_numpy(kernel.copy()), torch.from_numpy(bias),
                      padding=1).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(inter["score"]["__call__"][0], expected, rtol=1e-4, atol=1e-5)


def test_deconvnet_unpools_then_deconvolves_by_value():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 32, 32, 3)), jnp.float32)
  params, inter = _intermediates("deconvnet", x)
  unpooled = _unpool(inter["deconv3_1"]["__call__"][0], inter["backbone"]["switches2"][0].astype(np.int64),
                     (16, 16))
  kernel = np.asarray(params["deconv2_1"]["TransposeConv_0"]["kernel"])  # (3, 3, in, out)
  expected = F.conv_transpose2d(_torch(unpooled),
                                torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()),
                                padding=1).numpy().transpose(0, 2, 3, 1)
  got = inter["deconv2_1"]["TransposeConv_0"]["__call__"][0]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _upsample_filt(size):
  """The reference FCN's surgery.upsample_filt: a (size, size) bilinear filter."""
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  og = np.ogrid[:size, :size]
  return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def _fixed_up(x, name, f):
  """x (N, h, w, C) -> (N, h*f, w*f, C), written from each operator's definition."""
  if name == "nearest":  # the value copied into its whole f x f block
    return x.repeat(f, 1).repeat(f, 2)
  if name == "bed_of_nails":  # the value at the block's top-left, zeros elsewhere
    y = np.zeros((x.shape[0], x.shape[1] * f, x.shape[2] * f, x.shape[3]), x.dtype)
    y[:, ::f, ::f] = x
    return y
  # bilinear: kernel 2f, stride f, padding f/2, the filter on the channel diagonal
  kernel = np.einsum("ab,ij->abij", _upsample_filt(2 * f), np.eye(x.shape[-1]))
  return _up(x, kernel.astype(np.float32), f, f // 2)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest", "bed_of_nails"])
def test_fcn32s_with_a_fixed_upsampler_by_value(upsample):
  """FCN-32s ('same' geometry) == the 1x1 score conv on the backbone's stride32
  map, upsampled x32 by the operator's definition and cropped to the input."""
  config = dict(name="fcn", variant="32s", backbone="tiny", upsample=upsample,
                zero_init_score=False)
  model = models.build_model(config, 3)
  x = np.random.default_rng(0).normal(size=(2, 70, 45, 3)).astype(np.float32)
  params = _random_variables(model, x)["params"]
  got = np.asarray(jax.jit(model.apply)({"params": params}, x))
  feats = jax.jit(models.BACKBONES["tiny"](config).apply)({"params": params["backbone"]}, x)
  assert feats["stride32"].shape[1:3] == (3, 2)  # ceil(70 / 32), ceil(45 / 32)
  score = _score(feats["stride32"], params["score_fr"]).astype(np.float32)
  expected = _fixed_up(score, upsample, 32)[:, :70, :45]
  # f32: the bilinear taps are 2x2 sums of a 32-channel score conv (4 sqrt(36) eps)
  np.testing.assert_allclose(got, expected, rtol=0, atol=3e-6 * np.abs(expected).max())


def _majority(switches):
  """Per window, the offset most channels hold (ties: the lowest), as (N, h, w, 1)."""
  counts = np.stack([(switches == o).sum(-1) for o in range(4)], -1)
  return counts.argmax(-1)[..., None]


def test_fcn8s_with_max_unpooling_by_value():
  """FCN-8s with max_unpool == the score maps max-unpooled by a numpy loop: x2
  by pool5's, then pool4's switches (the offset most channels chose), x8 as
  three x2 unpools by pool3's, pool2's and pool1's, zeros elsewhere."""
  config = dict(name="fcn", variant="8s", backbone="tiny", upsample="max_unpool",
                zero_init_score=False)
  model = models.build_model(config, 3)
  x = np.random.default_rng(2).normal(size=(2, 70, 45, 3)).astype(np.float32)
  params = _random_variables(model, x)["params"]
  got = np.asarray(jax.jit(model.apply)({"params": params}, x))
  backbone = models.BACKBONES["tiny"](config, switches=True)
  feats = jax.jit(backbone.apply)({"params": params["backbone"]}, x)
  switches = {k: np.asarray(v).astype(np.int64) for k, v in feats.pop("switches").items()}
  sizes = {2 ** s: feats[f"stride{2 ** s}"].shape[1:3] for s in range(1, 6)}
  sizes[1] = x.shape[1:3]

  def unpool(score, stride):  # the pool whose output is at `stride`
    shared = np.broadcast_to(_majority(switches[f"stride{stride}"]), score.shape)
    return _unpool(score, shared, sizes[stride // 2])

  assert sizes[32] == (2, 1)  # floor pools: 70 // 32, 45 // 32
  s = unpool(_score(feats["stride32"], params["score_fr"]), 32)
  s = unpool(s + _score(feats["stride16"], params["score_pool4"]), 16)
  s = s + _score(feats["stride8"], params["score_pool3"])
  expected = unpool(unpool(unpool(s, 8), 4), 2)
  assert got.shape == expected.shape == (2, 70, 45, 3)
  assert 0 < (expected != 0).mean() <= 1 / 64  # one position per 8 x 8 block at most
  # f32: each value a sum of three 1x1 score convs over 32, 32 and 16 channels
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
