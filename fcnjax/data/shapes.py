"""`shapes`: a procedural segmentation dataset as a tfds builder (no download).

Filled shapes of 6 classes on textured, noisy backgrounds, with occlusion,
scale variety and thin / small parts (rings, bars, crosses) so that coarse
upsampling visibly loses boundary accuracy. Deterministic: example i of a
split is drawn from a generator seeded with (split seed, i). Stored as raw
uint8 tensors in array_record files, so it is prepared and read without
TensorFlow:

    import fcnjax.data.shapes, tensorflow_datasets as tfds
    split = tfds.data_source("shapes/default", split="train", data_dir=...)
    split[0]  # {'image': uint8 (128, 128, 3), 'segmentation_mask': uint8 (128, 128)}
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from fcnjax.data.tfds_source import data_source

FIELDS = {"tfds_config": "default"}  # the builder config: default, tiny, study, ...
CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "bar", "cross")
# Three disjoint splits, each from its own seed: train; validation (the
# selection split: budgets, early stopping, any choice); test (held out).
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


def _texture(rng, size, scale):
  """Smooth random field in [0, 1]: bilinear upsampling of a coarse grid."""
  cells = max(2, size // scale)
  grid = rng.random((cells + 1, cells + 1))
  pos = np.linspace(0, cells, size, endpoint=False)
  i = pos.astype(int)
  f = pos - i
  rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
  return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def _shape_mask(rng, cls, yy, xx, size):
  """Boolean mask of one object of class `cls` at a random pose and scale."""
  cy, cx = rng.uniform(0.1, 0.9, 2) * size
  r = rng.uniform(0.06, 0.22) * size
  theta = rng.uniform(0, np.pi)
  u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
  v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
  d2 = (xx - cx) ** 2 + (yy - cy) ** 2
  thin = rng.uniform(1.0, 2.5) * size / 128 + 0.8  # half-width of thin parts
  name = CLASS_NAMES[cls]
  if name == "disc":
    return d2 <= r ** 2
  if name == "square":
    return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
  if name == "triangle":
    angles = theta + np.array([0, 2, 4]) * np.pi / 3
    inside = np.ones_like(d2, bool)
    for a in angles:  # three half-planes at distance r/2 from the centre
      inside &= (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a) <= r * 0.5
    return inside
  if name == "ring":
    return (d2 <= r ** 2) & (d2 >= (r - 2 * thin) ** 2)
  if name == "bar":
    return (np.abs(u) <= r * 1.6) & (np.abs(v) <= thin)
  return ((np.abs(u) <= r) & (np.abs(v) <= thin)) | ((np.abs(v) <= r) & (np.abs(u) <= thin))


def render_example(seed, index, size):
  """(image uint8 (S, S, 3), mask uint8 (S, S)) for example `index`."""
  rng = np.random.default_rng([seed, index])
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  base = rng.uniform(40, 215, 3)
  tex = _texture(rng, size, rng.integers(4, 16))[..., None]
  image = base + (tex - 0.5) * rng.uniform(40, 120) * rng.choice([-1, 1], 3)
  mask = np.zeros((size, size), np.uint8)
  for _ in range(rng.integers(2, 7)):  # later objects occlude earlier ones
    cls = rng.integers(1, len(CLASS_NAMES))
    obj = _shape_mask(rng, cls, yy, xx, size)
    color = rng.uniform(0, 255, 3)
    shade = 1 + 0.25 * (_texture(rng, size, 8)[..., None] - 0.5)
    image = np.where(obj[..., None], color * shade, image)
    mask[obj] = cls
  image = image + rng.normal(0, rng.uniform(3, 15), image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask


def source(data_config, split, limit=None):
  """The split of the `shapes/<data_config.tfds_config>` builder (generated on first use)."""
  return data_source(f"shapes/{data_config.tfds_config}", data_config.data_dir, split, limit)


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  image_size: int = 128
  num_train: int = 2000
  num_validation: int = 200
  num_test: int = 1000


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Procedural shapes segmentation: 6 object classes + background."""

  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {"1.0.0": "First version.",
                   "1.1.0": "Class names only in the metadata, not in every example.",
                   "2.0.0": "Raw uint8 tensors in array_record files (no TensorFlow "
                            "needed); masks (H, W).",
                   "2.1.0": "A held-out test split (seed 2); the 'study' config."}
  BUILDER_CONFIGS = [
      ShapesConfig(name="default", description="128x128, 2000 train / 200 validation / "
                   "1000 test"),
      ShapesConfig(name="tiny", description="32x32, 64 train / 16 validation / 16 test (tests)",
                   image_size=32, num_train=64, num_validation=16, num_test=16),
      ShapesConfig(name="small", description="64x64, 512 train / 64 validation / 64 test",
                   image_size=64, num_train=512, num_validation=64, num_test=64),
      ShapesConfig(name="study", description="64x64, 2000 train / 300 validation (selection) "
                   "/ 1000 test: the studies' splits, trained and scored at one size",
                   image_size=64, num_train=2000, num_validation=300, num_test=1000),
  ]

  def __init__(self, *, file_format="array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self):
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
            "segmentation_mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8),
        }),
        supervised_keys=("image", "segmentation_mask"),
        metadata=tfds.core.MetadataDict(class_names=list(CLASS_NAMES)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is generated
    cfg = self.builder_config
    return {"train": self._generate_examples("train", cfg.num_train),
            "validation": self._generate_examples("validation", cfg.num_validation),
            "test": self._generate_examples("test", cfg.num_test)}

  def _generate_examples(self, split, count):
    for i in range(count):
      image, mask = render_example(SPLIT_SEEDS[split], i, self.builder_config.image_size)
      yield i, {"image": image, "segmentation_mask": mask}
