"""Today's operators as modules, each against a PyTorch implementation written
from its paper's definition (NCHW, F.unfold / F.grid_sample / F.pixel_shuffle),
with the module's own parameters copied over: outputs, and the gradients with
respect to the inputs (and the guidance) for a random cotangent. float64 throughout (jax x64),
so the tolerance is a few ulps of float64 times the sums' lengths (1e-10)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnjax import models
from fcnjax.models import modern_upsamplers as modern
from fcnjax.models.operator import INTERNALS
from fcnjax.studies import study_report

TOL = dict(rtol=1e-10, atol=1e-10)


def _t(x):  # NHWC numpy -> NCHW torch float64
  return torch.from_numpy(np.asarray(x, np.float64).transpose(0, 3, 1, 2).copy())


def _n(t):  # NCHW torch -> NHWC numpy
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _w(kernel):  # flax HWIO -> torch OIHW
  return torch.from_numpy(np.asarray(kernel, np.float64).transpose(3, 2, 0, 1).copy())


def _b(bias):
  return torch.from_numpy(np.asarray(bias, np.float64))


def _conv(x, p, padding=0, stride=1, groups=1):
  return F.conv2d(x, _w(p["kernel"]), _b(p["bias"]) if "bias" in p else None, stride, padding,
                  groups=groups)


def carafe_ref(x, kernels, k, f):
  """y[:, :, i, j] = sum_t kernels[:, t, i, j] x-neighbourhood_t of (i // f, j // f)."""
  n, c, h, w = x.shape
  oh, ow = kernels.shape[2:]
  hood = F.unfold(x, k, padding=k // 2).view(n, c, k * k, h, w)
  hood = F.pad(hood, (0, max(0, -(-ow // f) - w), 0, max(0, -(-oh // f) - h)))  # beyond: 0
  rows, cols = torch.arange(oh) // f, torch.arange(ow) // f
  hood = hood[:, :, :, rows][:, :, :, :, cols]
  return torch.einsum("nctij,ntij->ncij", hood, kernels)


def _apply(module, x, given=None, size=None, seed=0):
  """(params, output, vjp, sown): the module with every parameter perturbed (so zero
  or tiny initialisations test nothing away); vjp(cotangent) -> d/d(x, given);
  sown: what it sowed into `models.operator.INTERNALS` ({name: value})."""
  variables = {k: v for k, v in module.init(jax.random.key(seed), x, given, size).items()
               if k != INTERNALS}
  keys = iter(jax.random.split(jax.random.key(seed + 1), 100))
  variables = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape, p.dtype),
                           variables)
  y, vjp, state = jax.vjp(
      lambda a, g: module.apply(variables, a, g, size, mutable=[INTERNALS]), x, given,
      has_aux=True)
  sown = {name: value for name, (value,) in state.get(INTERNALS, {}).items()}
  return variables.get("params", {}), np.asarray(y), vjp, sown


def _same_grads(vjp, want, leaves, seed=3):
  """The module's input gradients for a random cotangent against torch autograd
  of `want` w.r.t. `leaves` (the NCHW inputs it was built from)."""
  cot = np.random.default_rng(seed).normal(size=_n(want).shape)
  grads = [g for g in vjp(jnp.asarray(cot)) if g is not None]
  torch_grads = torch.autograd.grad(want, leaves, _t(cot))
  for g, t in zip(grads, torch_grads):
    np.testing.assert_allclose(g, _n(t), **TOL)


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle_module(factor):
  x = _x((2, 5, 7, 3))
  p, y, vjp, sown = _apply(modern.PixelShuffleUpsample(factor, dtype=jnp.float64, param_dtype=jnp.float64), x)
  tx = _t(x).requires_grad_()
  want = F.pixel_shuffle(_conv(tx, p["conv"], padding=1), factor)
  np.testing.assert_allclose(y, _n(want), **TOL)
  _same_grads(vjp, want, [tx])


def test_carafe_module():
  x = _x((2, 5, 7, 6))
  up = modern.CARAFE(2, compressed=4, dtype=jnp.float64, param_dtype=jnp.float64)
  p, y, vjp, sown = _apply(up, x)
  tx = _t(x).requires_grad_()
  z = _conv(tx, p["compressor"])
  kernels = F.softmax(F.pixel_shuffle(_conv(z, p["encoder"], padding=1), 2), dim=1)
  want = carafe_ref(tx, kernels, 5, 2)
  np.testing.assert_allclose(y, _n(want), **TOL)
  _same_grads(vjp, want, [tx])
  assert p["compressor"]["kernel"].shape == (1, 1, 6, 4)  # compressed to 4 of 6 channels
  np.testing.assert_allclose(sown["kernels"], _n(kernels), **TOL)  # what it used


def _dysample_ref(x, p, f, g, style, dynamic, offsets=None):
  """DySample from its definition: offsets (x, y per group and sub-position) scaled
  and added to the sub-pixel grid, then a bilinear border grid_sample per group."""
  n, c, h, w = x.shape
  source = F.pixel_shuffle(x, f) if style == "pl" else x
  offset = _conv(source, p["offset"])
  if dynamic:
    offset = offset * torch.sigmoid(_conv(source, p["scope"])) * 0.5
  else:
    offset = offset * 0.25
  if style == "pl":
    offset = F.pixel_unshuffle(offset, f)
  sub = (torch.arange(f, dtype=torch.float64) - (f - 1) / 2) / f  # sub-pixel positions
  offset = offset.view(n, 2, g, f, f, h, w)
  if offsets is not None:  # the learned displacement, (N, h, w, 2, g, f, f)
    offsets.append(offset.permute(0, 5, 6, 1, 2, 3, 4).detach().numpy())
  gx = (torch.arange(w, dtype=torch.float64) + 0.5).view(1, 1, 1, 1, w) + sub.view(1, 1, f, 1, 1)
  gy = (torch.arange(h, dtype=torch.float64) + 0.5).view(1, 1, 1, h, 1) + sub.view(1, f, 1, 1, 1)
  px = 2 * (gx.unsqueeze(0) + offset[:, 0]) / w - 1  # (n, g, f(row), f(col), h, w)
  py = 2 * (gy.unsqueeze(0) + offset[:, 1]) / h - 1
  grid = torch.stack([px, py], -1).permute(0, 1, 4, 2, 5, 3, 6).reshape(n * g, h * f, w * f, 2)
  y = F.grid_sample(x.reshape(n * g, c // g, h, w), grid, mode="bilinear",
                    padding_mode="border", align_corners=False)
  return y.view(n, c, h * f, w * f)


@pytest.mark.parametrize("name,style,dynamic", [("dysample", "lp", False),
                                                ("dysample+", "lp", True),
                                                ("dysample-s", "pl", False),
                                                ("dysample-s+", "pl", True)])
def test_dysample_variants(name, style, dynamic):
  x = _x((2, 5, 7, 8))
  op = models.resolve(name)
  module = op(2, dtype=jnp.float64, param_dtype=jnp.float64)
  p, y, vjp, sown = _apply(module, x)
  tx, offsets = _t(x).requires_grad_(), []
  want = _dysample_ref(tx, p, 2, 4, style, dynamic, offsets)
  np.testing.assert_allclose(y, _n(want), **TOL)
  _same_grads(vjp, want, [tx])
  np.testing.assert_allclose(sown["offsets"], offsets[0], **TOL)
  # learned.png's panel: the mean offset length over groups and sub-positions.
  [(title, lengths)] = study_report.internal_panels({INTERNALS: {"up1": {
      "offsets": (sown["offsets"],)}}})
  want = np.hypot(offsets[0][0, :, :, 0], offsets[0][0, :, :, 1]).mean(axis=(2, 3, 4))
  np.testing.assert_allclose(lengths, want, **TOL)
  assert title == "up1 |offset| (px)" and lengths.shape == (5, 7)


def test_dysample_groups_fall_back_to_one_and_pl_refuses_odd_channels():
  x = _x((1, 4, 5, 6))  # 6 channels: 4 groups do not divide them
  p, y, vjp, sown = _apply(modern.DySample(2, dtype=jnp.float64, param_dtype=jnp.float64), x)
  assert p["offset"]["kernel"].shape == (1, 1, 6, 2 * 1 * 4)
  np.testing.assert_allclose(y, _n(_dysample_ref(_t(x), p, 2, 1, "lp", False)), **TOL)
  with pytest.raises(ValueError, match="style 'pl' needs channels divisible by factor"):
    models.resolve("dysample-s")(2).init(jax.random.key(0), _x((1, 4, 5, 6)))


def _semi_shift_en(en_c, weight, bias):
  """FADE's encoder term as the paper computes it: a stride-2 3x3 conv over each of
  the four half-pixel-shifted paddings, one per output sub-position."""
  pads = {(0, 0): (1, 0, 1, 0), (0, 1): (0, 1, 1, 0), (1, 0): (1, 0, 0, 1), (1, 1): (0, 1, 0, 1)}
  n, _, hh, ww = en_c.shape
  out = torch.zeros(n, weight.shape[0], hh, ww, dtype=en_c.dtype)
  for (r, s), pad in pads.items():
    out[:, :, r::2, s::2] = F.conv2d(F.pad(en_c, pad), weight, bias, stride=2)
  return out


@pytest.mark.parametrize("c_en", [6, 4])
def test_fade_module(c_en):
  x, en = _x((2, 4, 5, 6)), _x((2, 8, 10, c_en), seed=1)
  fade = modern.FADE(2, embedding=8, dtype=jnp.float64, param_dtype=jnp.float64)
  p, y, vjp, sown = _apply(fade, x, en)
  tx, ten = _t(x).requires_grad_(), _t(en).requires_grad_()
  leaves = [tx, ten]
  weight, bias = _w(p["kernel"]), _b(p["bias"])
  logits = (_semi_shift_en(_conv(ten, p["compress_en"]), weight, bias)
            + F.interpolate(F.conv2d(_conv(tx, p["compress_de"]), weight, None, padding=1),
                            scale_factor=2, mode="nearest"))
  kernels = F.softmax(logits, dim=1)
  gate = torch.sigmoid(F.interpolate(_conv(tx, p["gate"]), scale_factor=2, mode="nearest"))
  if c_en != 6:  # the stated rule: a 1x1 projection to the decoder's channels
    ten = _conv(ten, p["project_en"])
  else:
    assert "project_en" not in p
  want = gate * ten + (1 - gate) * carafe_ref(tx, kernels, 5, 2)
  np.testing.assert_allclose(y, _n(want), **TOL)
  _same_grads(vjp, want, leaves)
  np.testing.assert_allclose(sown["kernels"], _n(kernels), **TOL)
  np.testing.assert_allclose(sown["gate_map"], _n(gate), **TOL)


def test_sapa_module_on_a_guide_of_odd_size():
  x, en = _x((2, 4, 5, 16)), _x((2, 7, 9, 8), seed=1)  # guide 7x9, not 8x10
  sapa = modern.SAPA(2, embedding=4, dtype=jnp.float64, param_dtype=jnp.float64)
  p, y, vjp, sown = _apply(sapa, x, en)
  tx, ten = _t(x).requires_grad_(), _t(en).requires_grad_()
  gn = lambda t, q, groups: F.group_norm(t, groups, _b(q["scale"]), _b(q["bias"]), 1e-5)  # noqa
  q = _conv(gn(ten, p["norm_y"], 8), p["q"])
  k = _conv(gn(tx, p["norm_x"], 16), p["k"])
  n, e, oh, ow = q.shape
  hood = F.unfold(k, 5, padding=2).view(n, e, 25, 4, 5)
  hood = F.pad(hood, (0, 0, 0, 0))[:, :, :, torch.arange(oh) // 2][:, :, :, :, torch.arange(ow) // 2]
  attn = F.softmax(torch.einsum("netij,neij->ntij", hood, q), dim=1)
  want = carafe_ref(tx, attn, 5, 2)
  np.testing.assert_allclose(y, _n(want), **TOL)
  _same_grads(vjp, want, [tx, ten])
  assert y.shape == (2, 7, 9, 16)
  np.testing.assert_allclose(sown["kernels"], _n(attn), **TOL)


def test_the_study_figure_of_what_operators_learned():
  """`study_report.internal_panels`, the panels of learned.png: kernel entropy
  against scipy's, and a transpose conv at its bilinear init: FCN's bilinear
  filter on the diagonal, nothing off it (DySample's: test_dysample_variants)."""
  from scipy import stats as sps
  p = np.random.default_rng(0).dirichlet(np.ones(25), size=(3, 4))
  np.testing.assert_allclose(study_report.kernel_entropy(p),
                             sps.entropy(p, axis=-1) / np.log(25), rtol=1e-12)
  assert study_report.kernel_entropy(np.eye(9)[4]) == 0.0  # one tap: a copy
  x = _x((1, 3, 3, 5))
  learned = models.resolve("learned")(2, dtype=jnp.float64, param_dtype=jnp.float64)
  params = learned.init(jax.random.key(0), x)["params"]
  _, sown = learned.apply({"params": params}, x, mutable=[INTERNALS])
  [(title, kernel)] = study_report.internal_panels(sown)
  bilinear = 1 - abs(np.arange(4) - 1.5) / 2  # FCN's upsample_filt(4): 0.25 0.75 0.75 0.25
  np.testing.assert_allclose(kernel, np.outer(bilinear, bilinear), rtol=1e-15)
  assert "off-diagonal 0%" in title


def _bn_eval(t, p, stats, eps=1e-5):
  mean, var = _b(stats["mean"]), _b(stats["var"])
  return ((t - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)
          * _b(p["scale"]).view(1, -1, 1, 1) + _b(p["bias"]).view(1, -1, 1, 1))


@pytest.mark.parametrize("block", ["holistic", "depthwise"])
@pytest.mark.parametrize("context", [True, False])
def test_index_block(block, context):
  """The index block against the paper's structure: holistic (one conv to 4 positions)
  or depthwise (four per-channel branches, concatenated on a new axis)."""
  x = _x((2, 7, 6, 3))  # odd height: the pool floors
  blk = modern.IndexBlock(block=block, nonlinear=True, context=context, dtype=jnp.float64, param_dtype=jnp.float64)
  variables = blk.init(jax.random.key(0), x)
  keys = iter(jax.random.split(jax.random.key(1), 20))
  variables = jax.tree.map(lambda v: v + 0.3 * jax.random.normal(next(keys), v.shape, v.dtype)
                           if v.ndim > 1 else v + 0.3 * jnp.abs(jax.random.normal(
                               next(keys), v.shape, v.dtype)), variables)
  en, de = map(np.asarray, blk.apply(variables, x))
  p, stats = variables["params"], variables["batch_stats"]
  k, pad = (4, 1) if context else (2, 0)
  tx = _t(x)
  if block == "holistic":
    z = _conv(tx, p["index_conv"], pad, 2)
    z = _conv(torch.clamp(_bn_eval(z, p["index_bn"], stats["index_bn"]), 0, 6), p["index_proj"])
    y = torch.sigmoid(z)
    want_en, want_de = F.pixel_shuffle(F.softmax(y, dim=1), 2), F.pixel_shuffle(y, 2)
  else:
    kernel = np.asarray(p["index_conv"]["kernel"])  # (k, k, 1, 4C): output c*4 + branch
    c = x.shape[-1]
    branches = []
    for b in range(4):
      sel = np.arange(c) * 4 + b
      z = F.conv2d(tx, _w(kernel[..., sel]), None, 2, pad, groups=c)
      bn = {k2: v[sel] for k2, v in p["index_bn"].items()}
      st = {k2: v[sel] for k2, v in stats["index_bn"].items()}
      z = torch.clamp(_bn_eval(z, bn, st), 0, 6)
      z = z * _b(np.asarray(p["index_proj"]["kernel"])[0, 0, 0, sel]).view(1, -1, 1, 1)
      branches.append(z.unsqueeze(2))
    y = torch.sigmoid(torch.cat(branches, dim=2))  # (n, c, 4, h, w)
    n, _, _, h, w = y.shape
    want_en = F.pixel_shuffle(F.softmax(y, dim=2).reshape(n, c * 4, h, w), 2)
    want_de = F.pixel_shuffle(y.reshape(n, c * 4, h, w), 2)
  # Flax keeps BatchNorm statistics in float32 and normalises with them there:
  # a float32 rounding (eps 1.2e-7) passes through the sigmoid and softmax.
  np.testing.assert_allclose(en, _n(want_en), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(de, _n(want_de), rtol=1e-6, atol=1e-7)
  assert en.shape[1:3] == (6, 6)


def test_indexnet_unpool_and_index_weighted_encoder():
  """The decoder's nearest x index; the VGG encoder pools index-weighted (the sum of
  index_en * x over each window, IndexNet's 4 * avg_pool) with the same block."""
  x = _x((1, 3, 4, 5))
  index = jax.nn.sigmoid(_x((1, 7, 9, 1), seed=2))  # a pre-pool map of odd size
  _, y, _, _ = _apply(modern.IndexNetUnpool(2, dtype=jnp.float64, param_dtype=jnp.float64), x, index, (7, 9))
  want = F.interpolate(_t(x), scale_factor=2, mode="nearest") * _t(index)[:, :, :6, :8]
  np.testing.assert_allclose(y[:, :6, :8], _n(want), **TOL)
  assert not y[:, 6:].any() and not y[:, :, 8:].any()
  op = models.resolve("indexnet")
  encoder = models.VGGBackbone(stage_sizes=(1,), widths=(4,), head=False,
                               index_block=op.index_block(), dtype=jnp.float64,
                               param_dtype=jnp.float64)
  img = _x((1, 7, 8, 3))  # odd height: the index-weighted pool floors
  variables = encoder.init(jax.random.key(0), img)
  features, state = encoder.apply(variables, img, mutable=["intermediates"],
                                  capture_intermediates=True)
  inter = state["intermediates"]
  stage1 = torch.relu(_t(inter["conv1_1"]["__call__"][0]))  # one conv, no BN
  en, de = inter["index_block1"]["__call__"][0]
  pooled = 4 * F.avg_pool2d(stage1[:, :, :6] * _t(en), 2)
  np.testing.assert_allclose(features["stride2"], _n(pooled), **TOL)
  np.testing.assert_array_equal(features["index"]["stride2"], de)  # what the decoder gets
  np.testing.assert_array_equal(inter["index1"][0], de)  # sown: the bytes kept
