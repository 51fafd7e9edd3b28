"""A per-pixel patch classifier and its convolutionalized (FCN) twin.

`PatchClassifier` scores the centre pixel of one k x k patch: stride-1 VALID
3x3 convs, then fully connected layers. `convolutionalize` rewrites its FC
layers as convolutions (an FC on a k'xk'xC map == a k'xk' conv; an FC on a
vector == a 1x1 conv), giving `ConvolutionalPatchClassifier`, which scores
every pixel of a whole image in one pass with identical numbers, sharing the
conv features that a sliding window recomputes for every patch.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class PatchClassifier(nn.Module):
  """(N, k, k, 3) patches -> (N, num_classes) scores of their centre pixels."""
  num_classes: int
  patch_size: int = 15
  widths: Sequence[int] = (16, 32)
  hidden: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if x.shape[1:3] != (self.patch_size, self.patch_size):
      raise ValueError(f"expected {self.patch_size}x{self.patch_size} patches, got "
                       f"{x.shape[1]}x{x.shape[2]}")
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), padding="VALID", name=f"conv{i}", **kw)(x))
    x = nn.relu(nn.Dense(self.hidden, name="fc1", **kw)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, name="fc2", **kw)(x)


class ConvolutionalPatchClassifier(PatchClassifier):
  """(N, H, W, 3) image -> (N, H, W, num_classes): the patch classifier at
  every pixel (zero padding of k//2 around the image), in one pass. Same
  fields as PatchClassifier; its params come from `convolutionalize`."""

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.patch_size % 2 == 0:
      raise ValueError(f"patch_size={self.patch_size} must be odd (a centre pixel)")
    r = self.patch_size // 2
    x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), padding="VALID", name=f"conv{i}", **kw)(x))
    k = self.patch_size - 2 * len(self.widths)
    x = nn.relu(nn.Conv(self.hidden, (k, k), padding="VALID", name="fc1", **kw)(x))
    return nn.Conv(self.num_classes, (1, 1), name="fc2", **kw)(x)


def convolutionalize(params, patch_size, widths=(16, 32)):
  """PatchClassifier params -> ConvolutionalPatchClassifier params.

  fc1 kernel (k'*k'*C, hidden), flattened in (H, W, C) order, becomes a
  (k', k', C, hidden) conv kernel; fc2 (hidden, classes) a (1, 1, hidden, classes).
  """
  k = patch_size - 2 * len(widths)
  out = dict(params)
  fc1, fc2 = params["fc1"], params["fc2"]
  out["fc1"] = {"kernel": fc1["kernel"].reshape(k, k, widths[-1], -1), "bias": fc1["bias"]}
  out["fc2"] = {"kernel": fc2["kernel"][None, None], "bias": fc2["bias"]}
  return out


def extract_patches(image, patch_size):
  """(N, H, W, 3) -> (N*H*W, k, k, 3): the zero-padded patch around each pixel."""
  n, h, w, c = image.shape
  r = patch_size // 2
  padded = jnp.pad(image, ((0, 0), (r, r), (r, r), (0, 0)))
  rows = jnp.arange(h)[:, None] + jnp.arange(patch_size)[None]  # (H, k)
  cols = jnp.arange(w)[:, None] + jnp.arange(patch_size)[None]  # (W, k)
  patches = padded[:, rows[:, None, :, None], cols[None, :, None, :]]  # (N,H,W,k,k,C)
  return patches.reshape(n * h * w, patch_size, patch_size, c)
