"""A patch classifier and its convolutionalized twin give identical per-pixel scores."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnjax import models


@pytest.mark.parametrize("patch_size,widths", [(9, (4, 8)), (7, (6,))])
def test_convolutionalized_twin_equals_sliding_window(patch_size, widths):
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.normal(size=(2, 11, 13, 3)), jnp.float32)
  clf = models.PatchClassifier(4, patch_size=patch_size, widths=widths, hidden=16)
  params = clf.init(jax.random.key(0), jnp.zeros((1, patch_size, patch_size, 3)))["params"]
  # Sliding window: classify the zero-padded patch around every pixel.
  r = patch_size // 2
  padded = np.pad(np.asarray(image), ((0, 0), (r, r), (r, r), (0, 0)))
  patches = np.stack([padded[n, i:i + patch_size, j:j + patch_size]
                      for n in range(2) for i in range(11) for j in range(13)])
  windowed = np.asarray(clf.apply({"params": params}, patches)).reshape(2, 11, 13, 4)
  twin = models.ConvolutionalPatchClassifier(4, patch_size=patch_size, widths=widths,
                                             hidden=16)
  dense = twin.apply({"params": models.convolutionalize(params, patch_size, widths)}, image)
  assert dense.shape == (2, 11, 13, 4)
  np.testing.assert_allclose(np.asarray(dense), windowed, rtol=1e-4, atol=1e-5)
  # The vectorised patch extraction is the same as the explicit loop above.
  np.testing.assert_array_equal(np.asarray(models.extract_patches(image, patch_size)), patches)


def test_patch_classifier_rejects_wrong_patch_size():
  clf = models.PatchClassifier(2, patch_size=9)
  with pytest.raises(ValueError, match="9x9"):
    clf.init(jax.random.key(0), jnp.zeros((1, 7, 7, 3)))
