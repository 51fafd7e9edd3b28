"""The bench: PyTorch reference == fcnjax FCN, fc6/fc7 as matmuls == lax conv,
the XLA flag handling, one tiny end-to-end run, and the package free of the
benchmark-only code (benchmarks/: the PyTorch twin, Winograd)."""
import ast
import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax import lax

from fcnjax import models
from fcnjax.runtime import cli
from fcnjax.studies import benchmark
from fcnjax.models.vgg import VGGBackbone
from fcnjax.ops import fc
from fcnjax.train.losses import cross_entropy_sum

EPS = np.finfo(np.float32).eps
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def benchmarks(monkeypatch):
  """importlib.import_module with benchmarks/ (outside the package) on
  sys.path, as when its scripts run: its modules import one another by name."""
  monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
  return importlib.import_module


def f32_rtol(*lengths):
  """Relative tolerance of a float32 result of a chain of sums of these
  lengths against a float64 reference. A k-term sum's rounding errors walk at
  random: ~sqrt(k) * eps/2 of its size when summed in sequence (the worst
  common order; pairwise and blocked do better); a chain's steps add in
  quadrature. 8 such deviations (4 eps) bound the largest of millions of
  outputs on any CPU; k * eps/2 (all of one sign) is the strict worst case,
  which random data does not approach. A wrong tap, padding or layout errs by O(1)."""
  return 4 * np.sqrt(sum(lengths)) * EPS


def close(a, b, rtol):
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape
  err = np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12)
  assert err <= rtol, f"relative error {err:.2e} > {rtol:.2e}"


def conv(x, k, padding):
  return lax.conv_general_dilated(x, k, (1, 1), padding,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_and_vjp(f, x, k, cotangent):
  """f(x, k), and its gradients (w.r.t. x, k) of sum(f(x, k) * cotangent)."""
  y, vjp = jax.vjp(f, x, k)
  return (y,) + vjp(cotangent)


def float64_conv_and_vjp(x, k, cotangent, padding):
  """The exact-enough reference: lax's conv and its VJP in float64."""
  with jax.enable_x64(True):
    args = [jnp.asarray(a, jnp.float64) for a in (x, k, cotangent)]
    return [np.asarray(r) for r in conv_and_vjp(lambda a, b: conv(a, b, padding), *args)]


@pytest.mark.parametrize("shape,kernel,padding", [
    ((2, 7, 7, 8), (7, 7, 8, 16), "SAME"),     # fc6 in the 'same' geometry
    ((2, 3, 5, 8), (7, 7, 8, 16), "SAME"),     # map smaller than the kernel
    ((1, 9, 8, 8), (7, 7, 8, 4), "VALID"),     # 'paper' / 'torchvision' fc6
    ((2, 4, 4, 16), (1, 1, 16, 16), "SAME"),   # fc7
    ((1, 6, 5, 3), (3, 3, 3, 4), [(2, 0), (1, 1)]),
])
def test_conv_as_matmul_equals_lax_conv(shape, kernel, padding):
  """Output and both gradients (a random cotangent) of the matmul form and of
  lax's f32 conv, each against float64; each sum's length sets its tolerance:
  kh*kw*Cin for the output, kh*kw*Cout for d/dx, N*H'*W' for d/dkernel."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  k = rng.normal(size=kernel).astype(np.float32)
  out_shape = jax.eval_shape(lambda: conv(x, k, padding)).shape
  cotangent = rng.normal(size=out_shape).astype(np.float32)
  want = float64_conv_and_vjp(x, k, cotangent, padding)
  kh, kw, cin, cout = kernel
  tols = [f32_rtol(kh * kw * cin), f32_rtol(kh * kw * cout), f32_rtol(np.prod(out_shape[:3]))]
  for f in (lambda a, b: fc.conv_as_matmul(a, b, (1, 1), padding),
            lambda a, b: conv(a, b, padding)):
    for got, ref, tol in zip(conv_and_vjp(f, x, k, cotangent), want, tols):
      close(got, ref, tol)


def test_conv_as_matmul_rejects_strides():
  x, k = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
  with pytest.raises(ValueError, match="stride 1"):
    fc.conv_as_matmul(x, k, (2, 2), "SAME")


@pytest.mark.parametrize("shape,padding", [
    ((2, 7, 9, 5), "SAME"), ((1, 8, 8, 4), "SAME"), ((1, 7, 6, 3), "VALID"),
    ((1, 1, 3, 2), "SAME"), ((1, 7, 6, 3), [(2, 0), (0, 1)])])
def test_winograd_equals_lax_conv(shape, padding, benchmarks):
  """F(2x2, 3x3) in f32 against float64, output and gradients: the direct
  conv's sum lengths plus those of its input (4 terms), kernel (9) and output
  (9) transforms; measured errors ~1-3e-7, as lax's own f32 conv."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=shape).astype(np.float32)
  k = rng.normal(size=(3, 3, shape[-1], 6)).astype(np.float32)
  out_shape = jax.eval_shape(lambda: conv(x, k, padding)).shape
  cotangent = rng.normal(size=out_shape).astype(np.float32)
  want = float64_conv_and_vjp(x, k, cotangent, padding)
  lengths = (9 * shape[-1], 9 * 6, np.prod(out_shape[:3]))
  winograd = benchmarks("winograd")
  f = lambda a, b: winograd.conv_general_dilated(a, b, (1, 1), padding)
  for got, ref, n in zip(conv_and_vjp(f, x, k, cotangent), want, lengths):
    close(got, ref, f32_rtol(n, 4 + 9 + 9))


@pytest.mark.parametrize("geometry", ["same", "paper"])
def test_vgg_fc_impls_equal_loss_and_grads(geometry):
  """fc_impl='matmul' (the default) == 'xla': same params, loss and gradients."""
  make = lambda impl: VGGBackbone(stage_sizes=(1, 1, 1, 1, 1), widths=(4, 8, 8, 16, 16),
                                  fc_width=24, geometry=geometry, fc_impl=impl)
  x = jax.random.normal(jax.random.key(0), (2, 40, 36, 3))
  params = make("xla").init(jax.random.key(1), x)
  assert (jax.tree.map(jnp.shape, make("matmul").init(jax.random.key(1), x))
          == jax.tree.map(jnp.shape, params))

  def loss(impl):
    return lambda p: jnp.mean(jnp.square(make(impl).apply(p, x)["stride32"]))  # fc7
  (l_mm, g_mm), (l_xla, g_xla) = (jax.jit(jax.value_and_grad(loss(i)))(params) for i in ("matmul", "xla"))
  # They differ in fc6 / fc7's summation order only: forward 7*7*16 then 24
  # terms, backward 24 then 7*7*24 to fc6's input, which every earlier gradient inherits.
  tol = f32_rtol(7 * 7 * 16, 24, 24, 7 * 7 * 24)
  close(l_mm, l_xla, tol)
  jax.tree.map(lambda a, b: close(a, b, tol), g_mm, g_xla)


def _sum_lengths(params):
  """(forward, backward) sum lengths of an FCN's convolutions, all added: a
  kernel (kh, kw, C_in, C_out) sums kh*kw*C_in terms forward and kh*kw*C_out
  backward; a stride-f upscore kernel (2f, 2f) puts 2x2 taps on each output."""
  forward = backward = 0
  for path, k in jax.tree_util.tree_flatten_with_path(params)[0]:
    if k.ndim == 4:
      taps = 4 if "upscore" in jax.tree_util.keystr(path) else k.shape[0] * k.shape[1]
      forward, backward = forward + taps * k.shape[2], backward + taps * k.shape[3]
  return forward, backward


@pytest.mark.parametrize("variant", ["8s", "32s"])
def test_torch_reference_equals_fcn(variant, benchmarks):
  """Forward, loss and gradients of fcnjax's FCN (f32) == the PyTorch FCN's in
  float64 on the same weights, within the net's sum lengths (`_sum_lengths`,
  and the loss's mean and the kernel gradients' sum over the pixels)."""
  torch = pytest.importorskip("torch")
  torch_reference, torch_bench = benchmarks("torch_reference"), benchmarks("torch_bench")
  num_classes, x_shape = 5, (2, 37, 30, 3)
  config = ml_collections.ConfigDict(dict(name="fcn", variant=variant, backbone="tiny",
                                          dropout_rate=0.0, zero_init_score=False))
  model = models.build_model(config, num_classes)
  rng = np.random.default_rng(0)
  images = rng.normal(size=x_shape).astype(np.float32)
  labels = rng.integers(0, num_classes, size=x_shape[:3]).astype(np.int32)
  labels[0, :3] = 255  # ignored pixels
  params = model.init(jax.random.key(0), jnp.asarray(images))["params"]
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape),
                        params)  # the upsamplers' bilinear init is symmetric; break it

  def loss_fn(p):
    logits = model.apply({"params": p}, jnp.asarray(images))
    loss_sum, count = cross_entropy_sum(logits, jnp.asarray(labels))
    return loss_sum / count, logits
  (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)

  ref = torch_reference.build(num_classes, variant, **torch_bench.backbone_sizes("tiny"))
  ref = torch_reference.load_params(ref, jax.tree.map(np.asarray, params)).double()
  t_logits = ref(torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float64)))
  t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels).long(),
                                             ignore_index=255)
  t_loss.backward()
  forward, backward = _sum_lengths(params)
  pixels = np.prod(x_shape[:3])
  close(logits, t_logits.detach().numpy().transpose(0, 2, 3, 1), f32_rtol(forward))
  close(loss, t_loss.item(), f32_rtol(forward, pixels))
  for name, p in ref.named_parameters():
    path = name.split(".")
    leaf = (grads["backbone"] if path[0] == "backbone" else grads)[path[1]]
    tol = f32_rtol(forward, pixels, backward, pixels)
    if path[2] == "bias":
      close(leaf["bias"], p.grad.numpy(), tol)
    else:
      order = (2, 3, 0, 1) if p.dim() == 4 and "upscore" in path[1] else (3, 2, 0, 1)
      close(np.asarray(leaf["kernel"]).transpose(order), p.grad.numpy(), tol)


def _decoder_case(upsample, num_classes, x_shape, seed=0):
  """The study decoder (backbone 'small', depth 4), a random batch (pixels of
  image 0's first rows ignored) and variables moved off their init: every
  parameter plus 0.1 N(0, 1) (BN scales off 1, the pre-BN conv biases off 0),
  running means N(0, 0.1^2), running variances U(0.5, 1.5), so that the
  momentum of the running statistics is seen."""
  config = ml_collections.ConfigDict(dict(name="decoder", backbone="small",
                                          depth=benchmark.DECODER_DEPTH, upsample=upsample))
  model = models.build_model(config, num_classes)
  rng = np.random.default_rng(seed)
  images = rng.normal(size=x_shape).astype(np.float32)
  labels = rng.integers(0, num_classes, size=x_shape[:3]).astype(np.int32)
  labels[0, :3] = 255  # ignored pixels
  variables = jax.tree.map(np.asarray, model.init(jax.random.key(0), jnp.asarray(images)))
  params = jax.tree.map(lambda p: (p + 0.1 * rng.normal(size=p.shape)).astype(np.float32),
                        variables["params"])
  stats = jax.tree_util.tree_map_with_path(
      lambda path, s: (0.1 * rng.normal(size=s.shape) if path[-1].key == "mean"
                       else rng.uniform(0.5, 1.5, s.shape)).astype(np.float32),
      variables["batch_stats"])
  return model, images, labels, {"params": params, "batch_stats": stats}


def _torch_decoder(torch, benchmarks, upsample, num_classes, variables, **kwargs):
  """The twin on fcnjax's variables, float64, channels_last (as the bench runs it)."""
  torch_reference, torch_bench = benchmarks("torch_reference"), benchmarks("torch_bench")
  ref = torch_reference.build_decoder(num_classes, upsample,
                                      **torch_bench.decoder_sizes("small"), **kwargs)
  ref = torch_reference.load_decoder_params(ref, variables).double()
  return ref.to(memory_format=torch.channels_last)


def _tree_leaf(tree, name):
  for key in name.split("."):
    tree = tree[key]
  return tree


def _decoder_sum_lengths(params, x_shape):
  """(forward, backward, pixels) sum lengths of the study decoder's training
  step, all added (`f32_rtol` takes them in quadrature): each conv kernel
  (kh, kw, C_in, C_out) sums kh*kw*C_in terms forward and kh*kw*C_out backward;
  each BatchNorm two sums over its n = N*h*w pixels forward (mean, mean of
  squares) and two backward (of dy and dy * x_hat). Encoder stage s and
  decoder stage s both run at the input's size / 2^(s-1); pixels: the input's
  N*H*W, the longest sum of a kernel gradient (and the loss's mean)."""
  n, h, w, _ = x_shape
  forward = backward = 0
  for path, k in jax.tree_util.tree_flatten_with_path(params)[0]:
    if k.ndim == 4:
      forward += k.shape[0] * k.shape[1] * k.shape[2]
      backward += k.shape[0] * k.shape[1] * k.shape[3]
    keys = [p.key for p in path]
    if keys[-1] == "scale":  # one BatchNorm
      name = keys[-2]
      stage = int(name[2]) if name.startswith("bn") else int(keys[-3][3:])  # bn{s}_{i} / dec{s}
      pixels = n * (h // 2 ** (stage - 1)) * (w // 2 ** (stage - 1))
      forward, backward = forward + 2 * pixels, backward + 2 * pixels
  return forward, backward, n * h * w


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_torch_reference_equals_decoder(upsample, benchmarks):
  """One training step of the study decoder, fcnjax (f32) against the PyTorch
  twin (float64) on the same variables and batch, through the bench's
  `train_step_fn`: train-mode logits, the loss (cross entropy, mean over the
  non-ignored pixels), every parameter's gradient and the updated BatchNorm
  running statistics. Tolerances: `f32_rtol` of the step's sum lengths
  (`_decoder_sum_lengths`): 1.7e-4 for the logits and statistics, 2.6e-4 for
  the gradients, where the measured errors are below 1e-5; the twin with the
  other x2 operator errs by O(1) (checked last, so the tolerance tells the
  two apart)."""
  torch = pytest.importorskip("torch")
  torch_reference = benchmarks("torch_reference")
  num_classes, x_shape = 5, (4, 64, 64, 3)
  model, images, labels, variables = _decoder_case(upsample, num_classes, x_shape)
  params, stats = variables["params"], variables["batch_stats"]

  def loss_fn(p):
    logits, updates = model.apply({"params": p, "batch_stats": stats}, jnp.asarray(images),
                                  train=True, mutable=["batch_stats"])
    loss_sum, count = cross_entropy_sum(logits, jnp.asarray(labels))
    return loss_sum / count, (logits, updates["batch_stats"])
  # Jitted, under the tests' --xla_backend_optimization_level=0: before max_pool's
  # backward picked each window's maximum by one argmax, this gradient was off by
  # O(1) in encoder stages 1-3 here (the window recomputed inside the fused
  # backward rounded unlike its max, so the equality test lost whole windows).
  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss, (logits, new_stats)), grads = step(params)

  def torch_step(upsample):
    """The twin's logits (NHWC), loss, model after one `train_step_fn` step,
    and each BatchNorm's pixel count n."""
    ref = _torch_decoder(torch, benchmarks, upsample, num_classes, variables)
    seen, counts = {}, {}
    ref.register_forward_hook(lambda m, i, out: seen.update(logits=out.detach()))
    for name, m in ref.named_modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.register_forward_hook(
            lambda m, i, out, name=name: counts.update({name: i[0].numel() // i[0].shape[1]}))
    t_images = torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2)  # channels_last
    t_loss = torch_reference.train_step_fn(ref)(t_images, torch.from_numpy(labels).long())
    return seen["logits"].numpy().transpose(0, 2, 3, 1), t_loss.item(), ref, counts

  t_logits, t_loss, ref, counts = torch_step(upsample)
  forward, backward, pixels = _decoder_sum_lengths(params, x_shape)
  close(logits, t_logits, f32_rtol(forward))
  close(loss, t_loss, f32_rtol(forward, pixels))
  grad_tol = f32_rtol(forward, pixels, backward, pixels)
  checked = set()
  for name, p in ref.named_parameters():
    module, kind = name.rsplit(".", 1)
    leaf = _tree_leaf(grads, module)
    if kind == "weight":
      got = leaf["kernel"].transpose(3, 2, 0, 1) if p.dim() == 4 else leaf["scale"]
      close(got, p.grad.numpy(), grad_tol)
    elif module.startswith("backbone.conv"):
      # A conv bias before BatchNorm: its gradient, the sum of the BN input's
      # gradient over the batch, is 0 exactly (BN removes the batch mean);
      # both give rounding noise of that sum, on the scale of the conv's
      # kernel gradient (measured: f32 ~1e-7 of it, float64 ~1e-15).
      scale = np.abs(_tree_leaf(grads, module)["kernel"]).max()
      assert np.abs(leaf["bias"]).max() <= grad_tol * scale
      assert p.grad.abs().max().item() <= grad_tol * scale
    else:
      close(leaf["bias"], p.grad.numpy(), grad_tol)
    checked.add(name)
  assert len(checked) == len(jax.tree.leaves(params))
  # Running statistics: flax keeps 0.9 old + 0.1 batch, with the biased batch
  # variance; torch with momentum 0.1 the same but the unbiased variance
  # (n / (n - 1) times it), undone here to compare.
  momentum = 1 - torch_reference.BN_MOMENTUM
  bns = [(name, m) for name, m in ref.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
  assert len(bns) == len(jax.tree.leaves(new_stats)) // 2
  for name, m in bns:
    old, new, n = _tree_leaf(stats, name), _tree_leaf(new_stats, name), counts[name]
    close(new["mean"], m.running_mean.numpy(), f32_rtol(forward))
    biased = (m.running_var.numpy() - momentum * old["var"]) * (n - 1) / n
    close(new["var"], momentum * old["var"] + biased, f32_rtol(forward))
  # The tolerance tells the two operators apart.
  other, _, _, _ = torch_step("bilinear" if upsample == "nearest" else "nearest")
  with pytest.raises(AssertionError, match="relative error"):
    close(logits, other, f32_rtol(forward))


def test_torch_bilinear_equals_fcnjax_bilinear(benchmarks):
  """fcnjax's bilinear x2 (the FCN filter as a transpose conv over a zero
  border) == the twin's two forms (interpolate on the zero-padded map, a
  grouped transpose conv), each output a 2x2-tap sum: f32_rtol(4). Plain
  `F.interpolate(bilinear, align_corners=False)` equals it inside the map and
  not on its outer rows and columns, which it clamps: there fcnjax's is 3/4 of
  it (9/16 at the corners) where the map is constant."""
  torch = pytest.importorskip("torch")
  torch_reference = benchmarks("torch_reference")
  from fcnjax.ops.upsample import bilinear_upsample
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  want = np.asarray(bilinear_upsample(jnp.asarray(x), 2))
  t_x = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
  for impl in torch_reference.BILINEAR_IMPLS:
    got = torch_reference._bilinear_x2(t_x, impl).numpy().transpose(0, 2, 3, 1)
    close(want, got, f32_rtol(4))
  plain = torch.nn.functional.interpolate(t_x, scale_factor=2, mode="bilinear",
                                          align_corners=False).numpy().transpose(0, 2, 3, 1)
  close(want[:, 1:-1, 1:-1], plain[:, 1:-1, 1:-1], f32_rtol(4))
  ones = torch.ones(1, 1, 3, 3, dtype=torch.float64)
  border = torch_reference._bilinear_x2(ones, "interpolate")[0, 0].numpy()
  assert border[0, 0] == 9 / 16 and border[0, 2] == 3 / 4 and border[2, 2] == 1
  with pytest.raises(AssertionError, match="relative error"):
    close(want, plain, f32_rtol(4))


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_torch_decoder_eval_odd_sizes(upsample, benchmarks):
  """Eval mode (running statistics) on sides that are not multiples of 16:
  ceil pools (44 -> 22 -> 11 -> 6 -> 3, 38 -> 19 -> 10 -> 5 -> 3) and x2 steps
  cropped to each pre-pool size, as fcnjax's `operator.fit`; the forward's sum
  lengths, with no BatchNorm statistics to sum."""
  torch = pytest.importorskip("torch")
  num_classes, x_shape = 5, (2, 44, 38, 3)
  model, images, _, variables = _decoder_case(upsample, num_classes, x_shape, seed=1)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images))
  ref = _torch_decoder(torch, benchmarks, upsample, num_classes, variables).eval()
  with torch.no_grad():
    t_logits = ref(torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2))
  forward = sum(np.prod(k.shape[:3]) for k in jax.tree.leaves(variables["params"]) if k.ndim == 4)
  close(logits, t_logits.numpy().transpose(0, 2, 3, 1), f32_rtol(forward))


def test_torch_sgd_equals_optax_sgd(benchmarks):
  """`train_step_fn` as the bench builds it == the fcnjax bench's update
  (optax.sgd at benchmark.LEARNING_RATE, MOMENTUM), three steps of a 1x1-conv
  net on the cross entropy with ignored pixels, both in float64: the same
  momentum buffer (g + momentum * b) and step (-lr * b). The parameters'
  change, which a wrong rate or momentum alters by O(1), within 1e-9."""
  torch = pytest.importorskip("torch")
  import optax
  torch_reference = benchmarks("torch_reference")
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 5, 6, 3))
  labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.int32)
  labels[0, 0] = 255
  kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
  with jax.enable_x64(True):
    def loss_fn(p):  # cross_entropy_sum's, in float64 (it computes in float32)
      valid = labels != 255
      losses = optax.softmax_cross_entropy_with_integer_labels(
          jnp.asarray(images) @ p["kernel"] + p["bias"], jnp.asarray(np.where(valid, labels, 0)))
      return jnp.sum(jnp.where(valid, losses, 0.0)) / valid.sum()
    tx = optax.sgd(benchmark.LEARNING_RATE, benchmark.MOMENTUM)
    p = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    state = tx.init(p)
    for _ in range(3):
      updates, state = tx.update(jax.grad(loss_fn)(p), state, p)
      p = optax.apply_updates(p, updates)
    want = {k: np.asarray(v) for k, v in p.items()}
  net = torch.nn.Conv2d(3, 4, 1).double()
  with torch.no_grad():
    net.weight.copy_(torch.from_numpy(kernel.T[:, :, None, None]))
    net.bias.copy_(torch.from_numpy(bias))
  step = torch_reference.train_step_fn(net, lr=benchmark.LEARNING_RATE,
                                       momentum=benchmark.MOMENTUM)
  for _ in range(3):
    step(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels).long())
  got = {"kernel": net.weight.detach().numpy()[:, :, 0, 0].T, "bias": net.bias.detach().numpy()}
  for name, start in (("kernel", kernel), ("bias", bias)):
    close(got[name] - start, want[name] - start, 1e-9)


def test_configure_xla_appends():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  cli.configure_xla(env)
  assert env["XLA_FLAGS"] == " ".join(("--xla_force_host_platform_device_count=8",)
                                      + cli.XLA_CPU_FLAGS)
  cli.configure_xla(env)  # idempotent
  assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1
  env = {}
  cli.configure_xla(env)
  assert env["XLA_FLAGS"] == " ".join(cli.XLA_CPU_FLAGS)
  user = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"}
  cli.configure_xla(user)  # the user's own setting wins
  assert user["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
  gpu = {"JAX_PLATFORMS": "cuda"}
  cli.configure_xla(gpu)
  assert "XLA_FLAGS" not in gpu


def test_benchmark_modules_define_no_flags(benchmarks):
  from absl import app, flags  # noqa: F401  (absl.app defines its own flags)
  before = set(flags.FLAGS)
  names = ("fcnjax.studies.benchmark", "fcnjax.commands.bench", "torch_reference", "torch_bench")
  loaded = {name: sys.modules.pop(name) for name in names if name in sys.modules}
  try:
    for name in names:
      benchmarks(name)
    assert set(flags.FLAGS) == before
  finally:  # the modules other tests imported stay the ones in sys.modules
    sys.modules.update(loaded)


# Benchmark-only modules, now in benchmarks/, that fcnjax must not import.
OUTSIDE = ("torch_reference", "torch_bench", "winograd", "benchmarks")
# Where fcnjax may import torch: inside a function that reads a user's .pth (the converter).
TORCH_ALLOWED = {("fcnjax/models/torch_weights.py", "load_torch_state_dict")}


def _imported_names(tree):
  """(module name, enclosing function or None) of each import in a module,
  and of each string constant passed to importlib.import_module / __import__."""
  found = []

  def visit(node, function):
    if isinstance(node, ast.Import):
      found.extend((a.name, function) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      found.append((node.module, function))
      found.extend((f"{node.module}.{a.name}", function) for a in node.names)
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and ast.unparse(node.func) in ("importlib.import_module", "__import__")):
      found.append((node.args[0].value, function))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      function = node.name
    for child in ast.iter_child_nodes(node):
      visit(child, function)

  visit(tree, None)
  return found


def test_the_package_holds_no_benchmark_code():
  """No fcnjax module imports torch (but the converter's .pth reader, inside
  its function) or a benchmark-only module, or names the Winograd convolution
  or the PyTorch twin; the bench and the converter import with torch unimportable."""
  torch_imports, outside, mentions = [], [], []
  for root, _, files in os.walk(os.path.join(ROOT, "fcnjax")):
    for name in sorted(files):
      if not name.endswith(".py"):
        continue
      path = os.path.join(root, name)
      rel = os.path.relpath(path, ROOT)
      with open(path) as f:
        text = f.read()
      mentions += [(rel, w) for w in ("torch_reference", "winograd") if w in text]
      for module, function in _imported_names(ast.parse(text, path)):
        top = module.split(".")[0]
        if top == "torch" and (rel, function) not in TORCH_ALLOWED:
          torch_imports.append((rel, function, module))
        if top in OUTSIDE or (top == "fcnjax" and module.split(".")[-1] in OUTSIDE):
          outside.append((rel, module))
  assert not torch_imports and not outside and not mentions, (torch_imports, outside, mentions)
  code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` raises
          "import fcnjax.commands.bench, fcnjax.commands.convert, fcnjax.studies.benchmark\n"
          "print(sorted(set(sys.modules) & {'torch_reference', 'torch_bench', 'winograd'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=ROOT).stdout
  assert out.strip().splitlines()[-1] == "[]", out


def test_bench_run_tiny(benchmarks):
  """The bench with the PyTorch twin as its reference, side by side, when
  torch is installed; the driver rows alone otherwise."""
  torch_bench = benchmarks("torch_bench")
  with_torch = torch_bench.torch_reference.torch_available()
  opts = benchmark.Options(backbone="tiny", size=32, batch_size=8, steps=1,  # 8 devices
                           reference=torch_bench.reference if with_torch else None)
  assert torch_bench.reference("fcn8s", "bilinear", opts) is None  # cases it does not cover
  assert torch_bench.reference("segnet", "-", opts) is None
  rows = benchmark.run(["fcn8s"], ["learned"], ["jit"], opts)
  assert rows[0]["name"] == "fcn8s_learned_jit" and rows[0]["train_images_per_s"] > 0
  if with_torch:
    assert rows[1]["name"] == "torch_fcn8s" and rows[0]["vs_torch"] > 0
    assert rows[1]["malloc"] == "system" and rows[1]["peak_rss_mb"] > 0
    import multiprocessing
    assert multiprocessing.active_children() == []  # its process has ended
  else:
    assert len(rows) == 1 and "vs_torch" not in rows[0]
  assert "vs torch" in benchmark.format_table(rows)


def test_torch_bench_covers(benchmarks):
  """The cases with a twin: FCNs with learned upsampling on the plain VGGs, the
  study decoder with nearest / bilinear on the BatchNorm VGGs; float32 only."""
  pytest.importorskip("torch")
  covered = benchmarks("torch_bench").has_reference
  opts = lambda backbone, dtype="float32": benchmark.Options(backbone=backbone, dtype=dtype)
  assert covered("fcn8s", "learned", opts("tiny")) and covered("fcn32s", "learned", opts("vgg16"))
  assert covered("decoder", "nearest", opts("small"))
  assert covered("decoder", "bilinear", opts("vgg16_bn"))
  assert not covered("fcn8s", "learned", opts("small"))  # BatchNorm: no FCN twin
  assert not covered("decoder", "nearest", opts("tiny"))  # no BatchNorm: no decoder twin
  assert not covered("decoder", "max_unpool", opts("small"))
  assert not covered("decoder", "nearest", opts("small", "bfloat16"))
  assert not covered("decoder", "nearest", opts("resnet18"))
  config = benchmark.model_config("decoder", "bilinear", "small")
  assert (config.depth, config.upsample) == (benchmark.DECODER_DEPTH, "bilinear")


# Frees a 256 MiB malloc block, allocates it again and counts the page faults
# of the second block's first touch.
REFAULT = """
import ctypes, resource
from fcnjax.runtime import cli
applied = cli.configure_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 2**28
block = libc.malloc(size)
ctypes.memset(block, 1, size)
libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(libc.malloc(size), 1, size)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_configure_allocator_reuses_freed_memory():
  """glibc's default maps a large block afresh at every allocation (one fault
  per 4 KiB page: 65,536 here); with configure_allocator it is reused."""
  results = {}
  for setting in ("system", "tuned"):
    env = {**os.environ, "FCNJAX_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", REFAULT], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    results[setting] = (out[0] == "True", int(out[1]))
  assert results["system"][0] is False and results["system"][1] > 60000, results
  assert results["tuned"][0] is True and results["tuned"][1] < 1000, results
  # Not for an accelerator run, nor when turned off (decided before any mallopt).
  assert cli.configure_allocator({"JAX_PLATFORMS": "cuda"}) is False
  assert cli.configure_allocator({"JAX_PLATFORMS": "cpu", "FCNJAX_MALLOC": "system"}) is False
  assert cli._cpu_run({"JAX_PLATFORMS": "cpu"}) and not cli._cpu_run({"JAX_PLATFORMS": "tpu,cpu"})


def test_input_rows_time_the_pipeline_against_the_step(tmp_path):
  from fcnjax.configs import fcn8s_shapes
  config = fcn8s_shapes.get_config()
  config.data.tfds_config, config.data.data_dir = "tiny", str(tmp_path)
  config.data.crop_size, config.batch_size = 32, 8
  rows = benchmark.input_rows(config, steps=3, settings=((0, 0), (2, 0)))
  by_name = {r["name"]: r for r in rows}
  fixed = by_name["step (fixed batch)"]["images_per_s"]
  fed = by_name["step fed by the pipeline"]
  assert fixed > 0 and fed["busy_fraction"] == pytest.approx(fed["images_per_s"] / fixed)
  for name in ("pipeline threads=0 workers=0", "pipeline threads=2 workers=0"):
    row = by_name[name]
    assert row["vs_step_demand"] == pytest.approx(row["images_per_s"] / fixed)
  assert "x demand" in benchmark.format_input_table(rows)
