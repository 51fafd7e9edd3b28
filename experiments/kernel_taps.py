"""Where the learned reassembly kernels look, from a study's final weights.

    python experiments/kernel_taps.py --study=operators_guided --arms=carafe,fade,sapa \
        --seeds=0,1,2 --root=/root/study

For every operator that sows k_up x k_up reassembly kernels (CARAFE, FADE, SAPA)
and every x2 stage: output position (i, j) weighs the low-resolution taps
(i // 2 + a, j // 2 + b), a, b in [-k_up // 2, k_up // 2] (`ops.carafe`, zero
outside the map). Over a batch of training images (the test split is not
read) it prints, per arm, seed and stage: the mean weight on the output's own
low-resolution pixel (a = b = 0), where each output's largest tap lies (the
own pixel, the first ring, the outer ring; Chebyshev distance), the share of
outputs whose largest tap is the most common one among the outputs of their
sub-pixel phase (i % 2, j % 2) (1: one fixed offset per phase, a shift; low:
the tap follows the content), the weight-averaged tap distance, the mean
weight on taps outside the map (their values are zeros), the normalised
entropy (1: uniform, 0: one tap), and the label agreement: the chance,
weighted by the kernel, that the output pixel's image block and the tap's
share a class (class histograms of the batch's labels), beside the same for
bilinear x2's fixed weights and for the own pixel alone (nearest). A kernel
that affiliates each output with its own class's points (SAPA's premise)
scores above both. Exploratory, not part of a study's protocol.
"""
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from fcnjax import viz
from fcnjax.data import pipeline
from fcnjax.inference import restore
from fcnjax.models.operator import INTERNALS
from fcnjax.runtime import cli
from fcnjax.studies import experiment, registry
from fcnjax.studies.study_report import kernel_entropy

FLAGS = flags.FLAGS


def define_flags():  # at run time only: importing the module (tests) defines none
  flags.DEFINE_string("study", "operators_guided", "a registered study")
  flags.DEFINE_list("arms", ["carafe", "fade", "sapa"], "arms whose operator sows kernels")
  flags.DEFINE_list("seeds", ["0"], "seeds")
  flags.DEFINE_string("root", "/root/study", "ROOT/STUDY/ARM,seed=S holds the runs")
  flags.DEFINE_integer("images", 32, "training images (the first batch of a fixed order)")


def tap_geometry(k_up, out_h, out_w, in_h, in_w, factor=2):
  """(ring (K*K,), outside (Ho, Wo, K*K)) of `ops.carafe`'s window: each tap's
  Chebyshev distance from the own pixel, and whether it falls off the map."""
  r = k_up // 2
  a, b = [t.reshape(-1) for t in np.meshgrid(np.arange(k_up) - r, np.arange(k_up) - r,
                                            indexing="ij")]
  rows = np.arange(out_h)[:, None, None] // factor + a
  cols = np.arange(out_w)[None, :, None] // factor + b
  outside = (rows < 0) | (rows >= in_h) | (cols < 0) | (cols >= in_w)
  return np.maximum(np.abs(a), np.abs(b)), outside


def bilinear_kernels(out_h, out_w, k_up=5):
  """(1, Ho, Wo, K*K): bilinear x2 (half-pixel centres) as taps of the window:
  9/16 on the own pixel, 3/16 on the row and column neighbour on the output's
  side, 1/16 on the diagonal one (zero padding at the border, as the window)."""
  k, r = np.zeros((1, out_h, out_w, k_up * k_up)), k_up // 2
  for i in range(out_h):
    for j in range(out_w):
      di, dj = (-1 if i % 2 == 0 else 1), (-1 if j % 2 == 0 else 1)
      for (a, b), v in {(0, 0): 9, (di, 0): 3, (0, dj): 3, (di, dj): 1}.items():
        k[0, i, j, (a + r) * k_up + b + r] = v / 16
  return k


def label_agreement(labels, num_classes, out_hw, k_up=5):
  """(N, Ho, Wo, K*K): for each output pixel and tap, the chance that a pixel of
  the output's image block and one of the tap's low-resolution block share a
  class (the blocks' class histograms, dotted; 0 off the map). labels: (N, H, W)."""
  n, h, w = labels.shape
  onehot = np.eye(num_classes + 1)[np.minimum(labels, num_classes)][..., :num_classes]  # ignored: 0
  def hist(size):
    f = h // size[0]
    return onehot.reshape(n, size[0], f, size[1], f, num_classes).mean((2, 4))
  out, low = hist(out_hw), hist((out_hw[0] // 2, out_hw[1] // 2))
  r = k_up // 2
  low = np.pad(low, ((0, 0), (r, r), (r, r), (0, 0)))
  a, b = [t.reshape(-1) for t in np.meshgrid(np.arange(k_up), np.arange(k_up), indexing="ij")]
  rows = (np.arange(out_hw[0]) // 2)[:, None, None] + a  # padded row of each tap
  cols = (np.arange(out_hw[1]) // 2)[None, :, None] + b
  return np.einsum("nijc,nijtc->nijt", out, low[:, rows, cols])


def describe(kernels, in_hw, agreement=None):
  """The row of one stage's (N, Ho, Wo, K*K) kernels from an (h, w) map;
  `agreement` (`label_agreement`, same shape): also the kernels' expected
  label agreement beside bilinear's and the own pixel's."""
  k = np.asarray(kernels, np.float64)
  k_up = int(round(np.sqrt(k.shape[-1])))
  ring, outside = tap_geometry(k_up, k.shape[1], k.shape[2], *in_hw)
  argmax = k.argmax(-1)  # (N, Ho, Wo)
  top = ring[argmax]
  same = 0  # outputs whose largest tap is their sub-pixel phase's most common one
  for i in range(2):
    for j in range(2):
      phase = argmax[:, i::2, j::2].reshape(-1)
      same += np.bincount(phase, minlength=k.shape[-1]).max()
  row = {"own pixel weight": f"{k[..., k.shape[-1] // 2].mean():.3f}",
         "argmax own / ring 1 / outer": " / ".join(
             f"{np.mean(top == d):.2f}" if d < k_up // 2 else f"{np.mean(top >= d):.2f}"
             for d in range(min(3, k_up // 2 + 1))),
         "argmax at its phase's mode": f"{same / argmax.size:.2f}",
         "tap distance": f"{(k * ring).sum(-1).mean():.2f}",
         "weight off the map": f"{(k * outside).sum(-1).mean():.3f}",
         "entropy": f"{kernel_entropy(k).mean():.3f}"}
  if agreement is not None:
    reference = bilinear_kernels(k.shape[1], k.shape[2], k_up)
    row["label agreement: kernel / bilinear / own pixel"] = " / ".join(
        f"{(w * agreement).sum(-1).mean():.3f}"
        for w in (k, reference, np.eye(k.shape[-1])[k.shape[-1] // 2]))
  return row


def main(_):
  cli.start()
  if FLAGS.study not in registry.STUDIES:
    raise SystemExit(f"--study={FLAGS.study}: one of {list(registry.STUDIES)}")
  spec = registry.STUDIES[FLAGS.study]
  module = next(m for m in list(sys.modules.values())
                if getattr(m, "__file__", None) == spec.config_file)
  base = module.get_config()  # the study's base config (its module is its config file)
  batch = next(iter(pipeline.train_batches(base.data, FLAGS.images, seed=0)))
  image, labels = jnp.asarray(batch["image"]), np.asarray(batch["label"])
  num_classes = pipeline.get_info(base.data).num_classes
  rows = []
  for arm in FLAGS.arms:
    for seed in [int(s) for s in FLAGS.seeds]:
      cfg = experiment.with_fields(base, {**spec.select([arm])[arm], "seed": seed})
      state, _ = restore(cfg, os.path.join(FLAGS.root, FLAGS.study, f"{arm},seed={seed}"),
                         which="latest")
      variables = {"params": state.params, "batch_stats": state.batch_stats}
      _, sown = jax.jit(lambda v, x, f=state.apply_fn: f(v, x, train=False, mutable=[INTERNALS]))(
          variables, image)
      for path, leaf in jax.tree_util.tree_flatten_with_path(sown.get(INTERNALS, {}))[0]:
        names = [str(getattr(p, "key", p)) for p in path]
        if "kernels" in names:
          stage = names[names.index("kernels") - 1]
          h, w = leaf.shape[1] // 2, leaf.shape[2] // 2
          rows.append({"arm": arm, "seed": seed, "stage": f"{stage} ({h}x{w} -> {2 * h}x{2 * w})",
                       **describe(leaf, (h, w), label_agreement(
                           labels, num_classes, (2 * h, 2 * w), int(round(leaf.shape[-1] ** 0.5))))})
  if not rows:
    raise SystemExit(f"--arms={','.join(FLAGS.arms)}: none sows reassembly kernels")
  print(viz.markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
  define_flags()
  app.run(main)
