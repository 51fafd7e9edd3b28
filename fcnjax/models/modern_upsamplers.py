"""Today's upsamplers as operators of the one set (`models/operator.py`).

Each is a thin module over `fcnjax.ops.upsample` with its paper's defaults:

* `PixelShuffleUpsample` (Shi et al. 2016): a 3x3 conv to f^2 C channels, then
  depth-to-space (`ops.pixel_shuffle`).
* `CARAFE` (Wang et al. 2019): a 1x1 conv compresses the channels (64, or the
  input's width when narrower), a k_enc x k_enc conv predicts f^2 k_up^2
  values per source pixel, pixel-shuffled and softmax-normalised over the
  k_up^2 taps; `ops.carafe` reassembles each output pixel's source
  neighbourhood with them.
* `IndexNetUnpool` (Lu et al. 2019): `ops.indexed_unpool` by the decoder index
  that the encoder's `IndexBlock` predicted from the pre-pool map; that pool
  runs index-weighted (`ops.index_pool`) with the softmax-normalised index.
  Holistic (one index map) or depthwise (one per channel) blocks, with the
  paper's nonlinearity and context options.
* `DySample` (Liu et al. 2023): a 1x1 conv predicts offsets (static scope x0.25
  or dynamic x0.5 sigmoid(scope conv)) added to the sub-pixel initial grid,
  in g groups; 'lp' predicts from the input, 'pl' from its pixel shuffle;
  the output is a bilinear `ops.grid_sample` of the input.
* `FADE` (Lu et al. 2022), guided: CARAFE kernels from the semi-shift conv (one
  3x3 kernel over the compressed encoder map at the output resolution plus
  over the compressed decoder map, nearest-upsampled), and a gate from the
  decoder: gate * encoder + (1 - gate) * CARAFE(decoder).
* `SAPA` (Lu et al. 2022), SAPA-B, guided: softmax over a k x k low-resolution
  window of q . k (q from the GroupNorm-ed encoder map, k from the
  GroupNorm-ed decoder map, 1x1 projections), reassembling the decoder's values.

Stated adaptations where an operator's shape rules meet a family's maps:
DySample's groups fall back to 1 when they do not divide the channels (FCN's
class-score maps); FADE projects the encoder map by a 1x1 conv to the
decoder's channels when they differ (its gate mixes the two); SAPA's
GroupNorm uses gcd(32, C) groups. DySample-S refuses channels not divisible
by f^2. `VARIANTS` registers each paper's recommended variants by name;
`STUDY_VARIANTS` says which one the studies use.
"""
import functools
import math
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fcnjax.models.operator import INTERNALS, Upsample, fit
from fcnjax.ops import upsample as ops


def _conv(features, k, **kw):
  return nn.Conv(features, (k, k), padding=k // 2, **kw)


def _kw(module):
  return dict(dtype=module.dtype, param_dtype=module.param_dtype)


class PixelShuffleUpsample(Upsample):
  """Sub-pixel convolution: kernel_size conv to f^2 C channels -> pixel shuffle."""
  kernel_size: int = 3
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("kernel_size",)

  def upsample(self, x, given, size):
    f, c = self.factor, x.shape[-1]
    return ops.pixel_shuffle(_conv(f * f * c, self.kernel_size, name="conv", **_kw(self))(x), f)


def _softmax_kernels(logits):
  """Softmax over the taps (last axis), in at least float32."""
  wide = jnp.promote_types(logits.dtype, jnp.float32)
  return jax.nn.softmax(logits.astype(wide), axis=-1).astype(logits.dtype)


class CARAFE(Upsample):
  """Content-aware reassembly: compressor 1x1 -> encoder k_enc x k_enc -> shuffle ->
  softmax over k_up^2 -> `ops.carafe`. compressed: the compressor's width (capped
  at the input's)."""
  compressed: int = 64
  k_enc: int = 3
  k_up: int = 5
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("compressed", "k_enc", "k_up")

  @classmethod
  def check_options(cls, options):
    for k in ("compressed", "k_enc", "k_up"):
      if not isinstance(options[k], int) or options[k] < 1:
        raise ValueError(f"{k}={options[k]!r} must be a positive int")
    if options["k_up"] % 2 == 0 or options["k_enc"] % 2 == 0:
      raise ValueError(f"k_up={options['k_up']}, k_enc={options['k_enc']} must be odd")

  def upsample(self, x, given, size):
    f, k2 = self.factor, self.k_up ** 2
    kw = _kw(self)
    z = nn.Conv(min(self.compressed, x.shape[-1]), (1, 1), name="compressor",
                kernel_init=nn.initializers.xavier_uniform(), **kw)(x)
    logits = _conv(f * f * k2, self.k_enc, name="encoder",
                   kernel_init=nn.initializers.normal(0.001), **kw)(z)
    kernels = _softmax_kernels(ops.pixel_shuffle(logits, f))
    self.sow(INTERNALS, "kernels", kernels)
    return ops.carafe(x, kernels, self.k_up, f)


class IndexBlock(nn.Module):
  """IndexNet's index block on a pre-pool map (N, H, W, C): (index_en, index_de),
  each (N, 2(H//2), 2(W//2), 1 (holistic) or C (depthwise)).

  Logits: a 2x2 stride-2 conv (context: 4x4, padding 1) to 4 values per window
  (holistic: from all channels; depthwise: 4 per channel), with nonlinear: that
  conv to 2C (holistic) / 4C (depthwise) channels -> BatchNorm -> ReLU6 -> a 1x1
  conv. index_de = sigmoid(logits), index_en = its softmax over the window's 4
  positions; both pixel-shuffled to the window's positions.
  """
  block: str = "holistic"
  nonlinear: bool = True
  context: bool = True
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train=False):
    c = x.shape[-1]
    kw = _kw(self)
    k, pad = (4, 1) if self.context else (2, 0)
    depthwise = self.block == "depthwise"
    groups = c if depthwise else 1
    width = (4 * c if depthwise else 2 * c) if self.nonlinear else (4 * c if depthwise else 4)
    y = nn.Conv(width, (k, k), strides=2, padding=pad, feature_group_count=groups,
                use_bias=False, name="index_conv", **kw)(x)
    if self.nonlinear:
      y = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       axis_name=self.axis_name if train else None, name="index_bn", **kw)(y)
      y = jnp.clip(y, 0, 6)  # ReLU6
      out = 4 * c if depthwise else 4
      y = nn.Conv(out, (1, 1), feature_group_count=out if depthwise else 1, use_bias=False,
                  name="index_proj", **kw)(y)
    n, h, w, _ = y.shape
    y = jax.nn.sigmoid(y).reshape(n, h, w, -1, 4)  # (position) last, channel-major
    z = jax.nn.softmax(y, axis=-1)
    return (ops.pixel_shuffle(z.reshape(n, h, w, -1), 2),
            ops.pixel_shuffle(y.reshape(n, h, w, -1), 2))


class IndexNetUnpool(Upsample):
  """IndexNet's decoder: nearest x2 times the decoder index of the pool it inverts.
  (Options configure the encoder's `IndexBlock`; the factor is 2.)"""
  block: str = "holistic"
  nonlinear: bool = True
  context: bool = True
  needs: ClassVar[str] = "index"
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("block", "nonlinear", "context")

  @classmethod
  def check_options(cls, options):
    if options["block"] not in ("holistic", "depthwise"):
      raise ValueError(f"block={options['block']!r}; valid: ('holistic', 'depthwise')")

  @classmethod
  def index_block(cls, options):
    return functools.partial(IndexBlock, **options)

  def upsample(self, x, index, size):
    f = self.factor
    if f != 2:
      raise ValueError(f"IndexNet unpools x2 (the index block's 2x2 windows), not x{f}")
    h, w = x.shape[1:3]
    return ops.indexed_unpool(x, fit(index, (h * f, w * f)).astype(x.dtype), f)


def _initial_positions(factor, groups):
  """(2, groups, f, f) sub-pixel offsets of each output position from its source
  pixel's centre, in source pixels: x (column) first, then y (row)."""
  h = (jnp.arange(factor) - (factor - 1) / 2) / factor
  pos = jnp.stack([jnp.broadcast_to(h[None, :], (factor, factor)),
                   jnp.broadcast_to(h[:, None], (factor, factor))])
  return jnp.broadcast_to(pos[:, None], (2, groups, factor, factor))


class DySample(Upsample):
  """Point sampling with learned offsets (style 'lp' / 'pl', dynamic scope or static,
  `groups` channel groups with their own offsets; 1 when they do not divide C)."""
  style: str = "lp"
  dynamic: bool = False
  groups: int = 4
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("style", "dynamic", "groups")

  @classmethod
  def check_options(cls, options):
    if options["style"] not in ("lp", "pl"):
      raise ValueError(f"style={options['style']!r}; valid: ('lp', 'pl')")
    if not isinstance(options["groups"], int) or options["groups"] < 1:
      raise ValueError(f"groups={options['groups']!r} must be a positive int")

  def upsample(self, x, given, size):
    f, (n, h, w, c) = self.factor, x.shape
    g = self.groups if c % self.groups == 0 else 1
    kw = _kw(self)
    pl = self.style == "pl"
    if pl and c % (f * f):
      raise ValueError(f"DySample style 'pl' needs channels divisible by factor^2 = {f * f}; "
                       f"got {c} (use style 'lp')")
    source = ops.pixel_shuffle(x, f) if pl else x
    width = 2 * g if pl else 2 * g * f * f
    offset = nn.Conv(width, (1, 1), name="offset", kernel_init=nn.initializers.normal(0.001),
                     **kw)(source)
    if self.dynamic:
      scope = nn.Conv(width, (1, 1), use_bias=False, name="scope",
                      kernel_init=nn.initializers.zeros, **kw)(source)
      offset, scale = offset * jax.nn.sigmoid(scope), 0.5
    else:
      scale = 0.25
    if pl:
      offset = ops.pixel_unshuffle(offset, f)
    # (N, h, w, 2, g, f, f): x / y offsets of each group's f x f sub-positions.
    offset = offset.reshape(n, h, w, 2, g, f, f) * scale
    self.sow(INTERNALS, "offsets", offset)  # the learned displacement, in source pixels
    offset = offset + _initial_positions(f, g)
    cx = (jnp.arange(w) + 0.5)[None, None, :, None, None, None]  # pixel centres
    cy = (jnp.arange(h) + 0.5)[None, :, None, None, None, None]
    grid = jnp.stack([2 * (cx + offset[:, :, :, 0]) / w - 1,
                      2 * (cy + offset[:, :, :, 1]) / h - 1], axis=-1)
    # (N, h, w, g, f, f, 2) -> (N, g, h, f, w, f, 2): one grid_sample per group.
    grid = grid.transpose(0, 3, 1, 4, 2, 5, 6)
    grid = grid.reshape(n * g, h * f, w * f, 2)
    xs = x.reshape(n, h, w, g, c // g).transpose(0, 3, 1, 2, 4).reshape(n * g, h, w, c // g)
    y = ops.grid_sample(xs, grid.astype(x.dtype)).reshape(n, g, h * f, w * f, c // g)
    return y.transpose(0, 2, 3, 1, 4).reshape(n, h * f, w * f, c)


class FADE(Upsample):
  """Guided: gate * encoder + (1 - gate) * CARAFE(decoder) with semi-shift kernels.

  given: the encoder map (N, H, W, C_en) at the output stride; the output has
  its size and the decoder's C channels (the encoder map projected 1x1 to C
  when C_en != C)."""
  embedding: int = 64
  k_up: int = 5
  needs: ClassVar[str] = "guidance"
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("embedding", "k_up")

  @classmethod
  def check_options(cls, options):
    if options["k_up"] % 2 == 0 or options["embedding"] < 1:
      raise ValueError(f"k_up={options['k_up']} must be odd, embedding "
                       f"{options['embedding']} positive")

  def upsample(self, x, en, size):
    f, k2, c = self.factor, self.k_up ** 2, x.shape[-1]
    kw = _kw(self)
    en = en.astype(self.dtype)
    out_size = en.shape[1:3]
    up = lambda t: fit(ops.nearest_upsample(t, f), out_size)  # noqa: E731
    en_c = nn.Conv(self.embedding, (1, 1), name="compress_en", **kw)(en)
    de_c = nn.Conv(self.embedding, (1, 1), use_bias=False, name="compress_de", **kw)(x)
    kernel = self.param("kernel", nn.initializers.xavier_normal(),
                        (3, 3, self.embedding, k2), self.param_dtype).astype(self.dtype)
    bias = self.param("bias", nn.initializers.zeros, (k2,), self.param_dtype)
    conv = lambda t: jax.lax.conv_general_dilated(  # noqa: E731
        t, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    logits = conv(en_c) + up(conv(de_c)) + bias.astype(self.dtype)
    kernels = _softmax_kernels(logits)
    gate = jax.nn.sigmoid(up(nn.Conv(1, (1, 1), name="gate", **kw,
                                     kernel_init=nn.initializers.xavier_uniform())(x)))
    self.sow(INTERNALS, "kernels", kernels)
    self.sow(INTERNALS, "gate_map", gate)  # 1: the encoder map
    if en.shape[-1] != c:
      en = nn.Conv(c, (1, 1), use_bias=False, name="project_en", **kw)(en)
    return gate * en + (1 - gate) * ops.carafe(x, kernels, self.k_up, f)


class SAPA(Upsample):
  """Guided, SAPA-B: softmax_k(q . k) over each output pixel's k_up x k_up
  low-resolution window reassembles the decoder's values.

  given: the encoder map (N, H, W, C_en) at the output stride (the output has
  its size); q = 1x1(GroupNorm(encoder)), k = 1x1(GroupNorm(decoder)), v =
  the decoder map; GroupNorm groups gcd(32, channels), norm=False drops it."""
  embedding: int = 32
  k_up: int = 5
  norm: bool = True
  needs: ClassVar[str] = "guidance"
  learned: ClassVar[bool] = True
  options: ClassVar[tuple] = ("embedding", "k_up", "norm")

  check_options = FADE.check_options

  def upsample(self, x, en, size):
    kw = _kw(self)
    en = en.astype(self.dtype)
    init = dict(kernel_init=nn.initializers.normal(0.02), bias_init=nn.initializers.zeros)
    if self.norm:
      norm = lambda t, name: nn.GroupNorm(math.gcd(32, t.shape[-1]), epsilon=1e-5,  # noqa: E731
                                          name=name, **kw)(t)
      x_n, en = norm(x, "norm_x"), norm(en, "norm_y")
    else:
      x_n = x
    q = nn.Conv(self.embedding, (1, 1), name="q", **init, **kw)(en)
    k = nn.Conv(self.embedding, (1, 1), name="k", **init, **kw)(x_n)
    attn = _softmax_kernels(ops.local_similarity(q, k, self.k_up, self.factor))
    self.sow(INTERNALS, "kernels", attn)
    return ops.carafe(x, attn, self.k_up, self.factor)


def _variant(cls, name, **defaults):
  """A registered variant: `cls` with other option defaults."""
  return type(name, (cls,), {"__annotations__": {k: type(v) for k, v in defaults.items()},
                             **defaults, "__module__": __name__})


VARIANTS = {
    "pixel_shuffle": PixelShuffleUpsample,
    "carafe": CARAFE,
    "indexnet": IndexNetUnpool,  # holistic, nonlinear, context (the paper's HINs)
    "indexnet_depthwise": _variant(IndexNetUnpool, "IndexNetDepthwise", block="depthwise"),
    "dysample": DySample,  # lp, static scope
    "dysample+": _variant(DySample, "DySamplePlus", dynamic=True),
    "dysample-s": _variant(DySample, "DySampleS", style="pl"),
    "dysample-s+": _variant(DySample, "DySampleSPlus", style="pl", dynamic=True),
    "fade": FADE,
    "sapa": SAPA,  # SAPA-B
}
# The variant of each method the studies use (the papers' segmentation choice).
STUDY_VARIANTS = {"pixel_shuffle": "pixel_shuffle", "carafe": "carafe",
                  "indexnet": "indexnet", "dysample": "dysample-s+", "fade": "fade",
                  "sapa": "sapa"}
