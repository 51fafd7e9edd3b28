"""Pictures: palette PNG masks, overlays, prediction grids, curves, ablations."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fcnjax.data.palette import IGNORE_COLOR, colorize  # noqa: E402


def _parent(path):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def overlay(image, mask, colors, alpha=0.5):
  """Blend the coloured mask over a uint8 RGB image; (H, W, 3) uint8."""
  blend = (1 - alpha) * np.asarray(image, np.float32) + alpha * colorize(mask, colors)
  return np.clip(blend, 0, 255).astype(np.uint8)


def save_palette_png(path, mask, colors):
  """Mode-'P' PNG whose pixel values are the class ids (255 stays 255)."""
  _parent(path)
  table = np.zeros((256, 3), np.uint8)
  table[:len(colors)] = colors
  table[255] = IGNORE_COLOR
  img = Image.fromarray(np.asarray(mask, np.uint8), mode="P")
  img.putpalette(table.reshape(-1).tolist())
  img.save(path)


def save_prediction_grid(path, images, labels, preds, colors, class_names=None):
  """Rows of image | truth | prediction, with a class legend."""
  _parent(path)
  n = len(images)
  fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
  for i in range(n):
    for j, (title, pic) in enumerate((("image", images[i]),
                                      ("truth", colorize(labels[i], colors)),
                                      ("prediction", colorize(preds[i], colors)))):
      axes[i, j].imshow(pic)
      axes[i, j].set_axis_off()
      if i == 0:
        axes[i, j].set_title(title)
  if class_names:
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(c) / 255) for c in colors]
    fig.legend(handles, class_names, loc="lower center", ncol=min(len(class_names), 7),
               fontsize=8)
  fig.tight_layout(rect=(0, 0.04 if class_names else 0, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_curves(path, history):
  """history: {name: [(step, value), ...]}; one panel per name."""
  _parent(path)
  fig, axes = plt.subplots(1, len(history), figsize=(4 * len(history), 3), squeeze=False)
  for ax, (name, points) in zip(axes[0], history.items()):
    steps, values = zip(*points)
    ax.plot(steps, values, marker="." if len(points) < 30 else None)
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_ablation(path, rows, metric, group, label):
  """Grouped bars: one group per rows[group] value, one bar per rows[label]."""
  _parent(path)
  groups = list(dict.fromkeys(r[group] for r in rows))
  labels = list(dict.fromkeys(r[label] for r in rows))
  width = 0.8 / len(labels)
  fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(groups) * len(labels) * 0.5 + 2, 3.5))
  for k, lab in enumerate(labels):
    xs, ys = [], []
    for g, grp in enumerate(groups):
      for r in rows:
        if r[group] == grp and r[label] == lab:
          xs.append(g + (k - (len(labels) - 1) / 2) * width)
          ys.append(r[metric])
    bars = ax.bar(xs, ys, width, label=str(lab))
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
  ax.set_xticks(range(len(groups)), [str(g) for g in groups])
  ax.set_ylabel(metric)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def markdown_table(rows, columns):
  """A Markdown table; floats with 4 decimals."""
  fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
  return "\n".join(lines)
