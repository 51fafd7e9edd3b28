"""The study decoder's training step with other kernel-gradient formulations.

    taskset -c 1 python experiments/conv_kernel_grad.py nearest,bilinear [VARIANTS] [ROUNDS]

XLA:CPU computes a 3x3 convolution's kernel gradient as a convolution of the
transposed input with the transposed output gradient, so each layer writes
its activations transposed every step (`experiments/profile_step.py`). This
replaces every stride-1 ungrouped 4-D convolution of flax's `nn.Conv` (the
whole bench step: `fcnjax.studies.benchmark.jax_step`, decoder, backbone
small, 64x64, batch 16) by a custom VJP: the input gradient is XLA's own,
the kernel gradient ('cat') one dot of the im2col patches (N*H*W, 9*Cin)
with the output gradient, ('taps') nine dots, one per tap, or ('cat_fwd')
the forward as that dot too, the patches kept for the backward. Prints the
gradients' largest difference from XLA's on a small case, then per
operator the best of ROUNDS rounds of 10 steps, ms a step, for each variant
('xla': unchanged). Changes the order of the kernel gradient's sums, so
numbers differ in the last bits: an experiment, not used by the library."""
import sys, time, types
from fcnjax.runtime import cli
cli.configure_xla()
import jax, jax.numpy as jnp, numpy as np
import flax.linen.linear as L
from fcnjax.studies import benchmark

ORIG = jax.lax.conv_general_dilated

def make_conv(variant):
  def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
           dimension_numbers=None, feature_group_count=1, batch_group_count=1,
           precision=None, preferred_element_type=None):
    plain = (tuple(window_strides) == (1, 1) and feature_group_count == 1
             and batch_group_count == 1 and lhs_dilation in (None, (1, 1))
             and rhs_dilation in (None, (1, 1)) and not isinstance(padding, str)
             and lhs.ndim == 4)
    if not plain:
      return ORIG(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                  dimension_numbers, feature_group_count, batch_group_count, precision,
                  preferred_element_type)
    pad = tuple(tuple(p) for p in padding)
    dn = dimension_numbers
    f = lambda a, b: ORIG(a, b, (1, 1), pad, dimension_numbers=dn, precision=precision)
    if variant == "cat_fwd":
      return im2col_conv(lhs, rhs, pad)
    @jax.custom_vjp
    def c(x, w):
      return f(x, w)
    def fwd(x, w):
      return f(x, w), (x, w)
    def bwd(res, dy):
      x, w = res
      dx = jax.vjp(lambda a: f(a, w), x)[1](dy)[0]
      kh, kw, ci, co = w.shape
      H, W = dy.shape[1:3]
      xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
      cols = [xp[:, i:i + H, j:j + W, :] for i in range(kh) for j in range(kw)]
      if variant == "cat":
        p = jnp.concatenate(cols, -1).reshape(-1, kh * kw * ci)
        dw = jnp.dot(p.T, dy.reshape(-1, co)).reshape(kh, kw, ci, co)
      else:
        d2 = dy.reshape(-1, co)
        dw = jnp.stack([jnp.dot(col.reshape(-1, ci).T, d2) for col in cols]).reshape(kh, kw, ci, co)
      return dx, dw
    c.defvjp(fwd, bwd)
    return c(lhs, rhs)
  return conv

def _patches(x, pad, kh, kw, H, W):
  xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
  cols = [xp[:, i:i + H, j:j + W, :] for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, -1).reshape(-1, kh * kw * x.shape[-1])

def im2col_conv(x, w, pad):
  kh, kw, ci, co = w.shape
  n, h, wd, _ = x.shape
  H, W = h + sum(pad[0]) - kh + 1, wd + sum(pad[1]) - kw + 1
  f = lambda a, b: ORIG(a, b, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  @jax.custom_vjp
  def c(x, w):
    return jnp.dot(_patches(x, pad, kh, kw, H, W), w.reshape(-1, co)).reshape(n, H, W, co)
  def fwd(x, w):
    p = _patches(x, pad, kh, kw, H, W)
    return jnp.dot(p, w.reshape(-1, co)).reshape(n, H, W, co), (x, w, p)
  def bwd(res, dy):
    x, w, p = res
    dx = jax.vjp(lambda a: f(a, w), x)[1](dy)[0]
    return dx, jnp.dot(p.T, dy.reshape(-1, co)).reshape(w.shape)
  c.defvjp(fwd, bwd)
  return c(x, w)

def patched(variant):
  ns = types.SimpleNamespace(**{k: getattr(jax.lax, k) for k in dir(jax.lax) if not k.startswith("__")})
  ns.conv_general_dilated = make_conv(variant) if variant else ORIG
  L.lax = ns

def check():
  x = jax.random.normal(jax.random.key(1), (2, 9, 7, 5), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
  w = jax.random.normal(jax.random.key(2), (3, 3, 5, 4), x.dtype)
  dn = ("NHWC", "HWIO", "NHWC")
  for v in ("cat", "taps", "cat_fwd"):
    g0 = jax.grad(lambda x, w: jnp.sum(jnp.sin(ORIG(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn))), (0, 1))(x, w)
    g1 = jax.grad(lambda x, w: jnp.sum(jnp.sin(make_conv(v)(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn))), (0, 1))(x, w)
    print(v, [float(jnp.max(jnp.abs(a - b))) for a, b in zip(g0, g1)])

def main():
  check()
  ups = sys.argv[1].split(",") if len(sys.argv) > 1 else ["nearest"]
  variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["", "cat", "taps", "cat_fwd"]
  rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
  opts = benchmark.Options(backbone="small", size=64, batch_size=16, num_classes=7)
  for up in ups:
    steps = []
    for v in variants:
      patched(v)
      step, _ = benchmark.jax_step("decoder", up, "jit", opts)
      step(); step()
      steps.append(step)
    patched("")
    best = [1e9] * len(steps)
    for r in range(rounds):
      for i, s in enumerate(steps):
        t = time.perf_counter()
        for _ in range(10):
          s()
        best[i] = min(best[i], (time.perf_counter() - t) / 10 * 1e3)
    print(up, {v or "xla": round(b, 1) for v, b in zip(variants, best)}, flush=True)

main()
