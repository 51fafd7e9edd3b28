"""A trained model's inference function as a file, with `jax.export`
(serialised StableHLO): images in, labels (and logits) out, normalisation
included, the weights embedded; it runs without fcnjax (docs/export.md).

The function: (N, H, W, 3) uint8 images (C channels: config.data.channels) (or float32 with values in 0..255)
-> (N, H, W) int32 labels, or (labels, (N, H, W, C) float32 logits). Its
batch size is symbolic; its image size symbolic too (multiples of 32 by
default, any size with --image_size=any, where the model's geometry allows:
docs/export.md has the table), or fixed (--image_size=H,W).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from fcnjax import inference, tiles
from fcnjax.data import pipeline

CHECKPOINTS = ("best", "latest")
INPUT_DTYPES = ("uint8", "float32")
# --image_size: '' -> multiples of the total stride of every model here
# (tiles.STRIDE), where the crops of pooled maps line up; 'any' -> any (H, W).
# Not tried one after the other: deciding the shapes of 'any' can take JAX's
# symbolic-shape solver minutes before it gives up (FCN 'same' + nearest).
SYMBOLIC_SIZES = {"": f"{tiles.STRIDE}*h, {tiles.STRIDE}*w", "any": "h, w"}
# What a model's code raises when its shapes cannot stay symbolic (a comparison
# of symbolic sizes it cannot decide, a size turned into a Python number).
SHAPE_ERRORS = (jax.errors.InconclusiveDimensionOperation, jax.errors.ConcretizationTypeError,
                jax.errors.TracerIntegerConversionError,
                jax.errors.TracerBoolConversionError, TypeError, ValueError)


def normalization_table(mode, channels=3):
  """(table, source) of `pipeline.normalize` (a per-channel affine map, with
  the channels reordered for 'caffe'): table (256, channels) float32, its own
  output for the pixel (v, ..., v), and source[k], the input channel output
  channel k reads."""
  c = channels
  table = pipeline.normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None], c, 1), mode)
  zero = pipeline.normalize(np.zeros(c, np.uint8), mode)
  moved = [pipeline.normalize(255 * np.eye(c, dtype=np.uint8)[j], mode) != zero
           for j in range(c)]
  return table, [next(j for j in range(c) if moved[j][k]) for k in range(c)]


def normalize(images, mode):
  """`pipeline.normalize` in the graph: (..., C) (RGB: C = 3) -> network input.

  uint8: looked up in `normalization_table`, so the values are pipeline's
  bit for bit (computed, x * scale - offset is fused by XLA into one
  multiply-add that rounds once, and differs by an ulp on half the pixels).
  float32 (values in 0..255): the same affine map computed, to a few ulps."""
  channels = images.shape[-1]
  table, source = normalization_table(mode, channels)
  x = images[..., source]
  if images.dtype == jnp.uint8:
    return jnp.asarray(table.T.reshape(-1))[x.astype(jnp.int32) + 256 * jnp.arange(channels)]
  scale = np.polyfit(np.arange(256.0), table.astype(np.float64), 1)[0].astype(np.float32)
  return x.astype(jnp.float32) * scale + table[0]  # least squares: 'caffe' scales by 1.0


def inference_function(state, normalization, logits=False):
  """images -> int32 labels (argmax over classes, eval mode), or (labels,
  float32 logits); the variables of `state` are closed over (constants)."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def infer(images):
    scores = state.apply_fn(variables, normalize(images, normalization), train=False)
    labels = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return (labels, scores.astype(jnp.float32)) if logits else labels
  return infer


def size_spec(image_size=""):
  """The (H, W) part of the input shape for --image_size: '' (multiples of
  tiles.STRIDE) or 'any' (symbolic, SYMBOLIC_SIZES), or 'H,W' / 'HxW' (fixed)."""
  if image_size in SYMBOLIC_SIZES:
    return SYMBOLIC_SIZES[image_size]
  try:
    size = tuple(int(p) for p in image_size.replace("x", ",").split(","))
  except ValueError:
    size = ()
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"--image_size={image_size}: expected H,W (two positive integers), "
                     f"'any', or nothing (multiples of {tiles.STRIDE})")
  return f"{size[0]}, {size[1]}"


def export_function(fn, input_dtype="uint8", image_size="", platforms=None, channels=3):
  """jax.export.Exported of `fn` on (b, H, W, channels) images of `input_dtype`, b
  symbolic, (H, W) from `size_spec(image_size)`. A model whose code cannot
  keep the sizes symbolic: ValueError naming --image_size."""
  size = size_spec(image_size)
  spec = jax.ShapeDtypeStruct(export.symbolic_shape(f"b, {size}, {channels}"), np.dtype(input_dtype))
  try:
    return export.export(jax.jit(fn), platforms=platforms)(spec)
  except SHAPE_ERRORS as e:
    if image_size not in SYMBOLIC_SIZES:
      raise  # a fixed size: not a symbolic-shape failure
    raise ValueError(
        f"--image_size={image_size or ''}: the model does not export with image sizes "
        f"({size}) ({type(e).__name__}: {str(e).splitlines()[0][:200]}); give a fixed "
        "size with --image_size=H,W") from e


def check_out(out):
  """ValueError naming --out unless `out` can be created as a file."""
  folder = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(folder):
    raise ValueError(f"--out={out}: no such folder {folder}")
  if os.path.isdir(out):
    raise ValueError(f"--out={out}: is a folder; give a file name")


def export_model(config, workdir, out, which="best", image_size="", input_dtype="uint8",
                 logits=False, platforms=None):
  """Writes the inference function of W's checkpoint (`which`) to `out` and
  its description to `out`.json (input spec, outputs, class names, palette,
  step). Both are written only once the export succeeded. Returns the description."""
  check_out(out)
  size = size_spec(image_size)
  if which not in CHECKPOINTS:
    raise ValueError(f"--checkpoint={which}: valid: {', '.join(CHECKPOINTS)}")
  if input_dtype not in INPUT_DTYPES:
    raise ValueError(f"--input_dtype={input_dtype}: valid: {', '.join(INPUT_DTYPES)}")
  state, info = inference.restore(config, workdir, which)
  fn = inference_function(state, config.data.normalization, logits)
  channels = config.data.get("channels", 3)
  exported = export_function(fn, input_dtype, image_size, platforms, channels)
  description = {
      "input": {"shape": f"(b, {size}, {channels})", "dtype": input_dtype,
                "values": ("RGB" if channels == 3 else f"{channels} channels") +
                ", 0..255; normalisation included"},
      "outputs": ["labels (b, H, W) int32"] + (
          [f"logits (b, H, W, {info.num_classes}) float32"] if logits else []),
      "platforms": list(exported.platforms),
      "normalization": config.data.normalization,
      "class_names": list(info.class_names),
      "palette": np.asarray(info.palette).tolist(),
      "step": int(state.step), "checkpoint": which, "workdir": os.path.abspath(workdir),
  }
  _write(out, exported.serialize())
  _write(out + ".json", (json.dumps(description, indent=2) + "\n").encode())
  return description


def _write(path, data):
  """`data` to `path` through a temporary file beside it (never half a file)."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
