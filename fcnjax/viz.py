"""Masks as pictures, prediction grids, training curves, ablation charts.

Masks are (H, W) integer class ids in [0, C) with 255 = ignore; palettes are
(C, 3) uint8 (see `fcnjax.data.palette.palette`); images are (H, W, 3) uint8.
Every plotting function creates the parent folders of `path` and closes its
figure.
"""
import contextlib
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image

from fcnjax.data.palette import IGNORE_COLOR, IGNORE_INDEX


def _color_table(palette):
  """(C, 3) palette -> (256, 3) uint8 lookup table, 255 in the ignore colour."""
  palette = np.asarray(palette, np.uint8)
  if palette.ndim != 2 or palette.shape[1] != 3 or not 0 < len(palette) <= 256:
    raise ValueError(f"palette must be (C, 3) with 1 <= C <= 256, got {palette.shape}")
  table = np.zeros((256, 3), np.uint8)
  table[:len(palette)] = palette
  table[IGNORE_INDEX] = IGNORE_COLOR
  return table


def _check_mask(mask, num_classes):
  """Integer (H, W) mask with ids in [0, C) or 255, returned as uint8."""
  mask = np.asarray(mask)
  if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
    raise ValueError(f"mask must be an (H, W) integer array, got {mask.shape} {mask.dtype}")
  bad = (mask < 0) | ((mask >= num_classes) & (mask != IGNORE_INDEX))
  if bad.any():
    raise ValueError(f"mask holds ids {np.unique(mask[bad])[:10].tolist()} outside "
                     f"[0, {num_classes}) and not {IGNORE_INDEX}; use a larger palette")
  return mask.astype(np.uint8)


def as_rgb(image):
  """(..., C) -> (..., 3) for display: RGB as is, one channel as gray, the
  first three of more channels."""
  image = np.asarray(image)
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


def _as_uint8_image(image):
  """(H, W, C) uint8, or float in [0, 1] scaled to uint8, shown as RGB (`as_rgb`)."""
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"image must be (H, W, C), got {image.shape}")
  image = as_rgb(image)
  if image.dtype == np.uint8:
    return image
  if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
    image = image * 255.0
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def colorize(mask, palette):
  """(H, W) class ids -> (H, W, 3) uint8 colours; 255 in the VOC ignore colour."""
  return _color_table(palette)[_check_mask(mask, len(palette))]


def overlay(image, mask, palette, alpha=0.5):
  """Blend colorize(mask) over an (H, W, 3) uint8 image: (1-alpha)*image + alpha*colours."""
  image = _as_uint8_image(image)
  if image.shape[:2] != np.shape(mask):
    raise ValueError(f"image {image.shape[:2]} and mask {np.shape(mask)} sizes differ")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}")
  blend = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask, palette)
  return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def save_palette_png(path, mask, palette):
  """Write an (H, W) mask as a mode-'P' PNG: pixel values = class ids, 255 kept.

  Reading it back with `np.asarray(PIL.Image.open(path))` gives the same ids;
  viewers show the palette colours (VOC `SegmentationClass` format).
  """
  mask = _check_mask(mask, len(palette))
  _makedirs_for(path)
  height, width = mask.shape
  image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask).tobytes())
  image.putpalette(_color_table(palette).reshape(-1).tolist())
  image.save(path)


def image_mask_grid(pairs, palette, size):
  """(2*size, n*size, 3) uint8 from n (image (H, W, 3) uint8, mask (H, W))
  pairs: images resized to size x size on top (bilinear), coloured masks
  below (nearest)."""
  tiles = []
  for image, mask in pairs:
    tiles.append(np.concatenate([
        np.asarray(Image.fromarray(_as_uint8_image(image)).resize((size, size),
                                                                  Image.BILINEAR)),
        np.asarray(Image.fromarray(colorize(mask, palette)).resize((size, size),
                                                                   Image.NEAREST))],
        axis=0))
  if not tiles:
    raise ValueError("image_mask_grid: no (image, mask) pairs")
  return np.concatenate(tiles, axis=1)


def _makedirs_for(path):
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)


@contextlib.contextmanager
def _figure(path, *args, **kwargs):
  """plt.subplots(*args, **kwargs); saved to path on success, closed always."""
  fig, axes = plt.subplots(*args, **kwargs)
  try:
    yield fig, axes
    _makedirs_for(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
  finally:
    plt.close(fig)


def _legend_handles(palette, ids, class_names):
  names = list(class_names) if class_names is not None else [str(c) for c in range(len(palette))]
  if len(names) != len(palette):
    raise ValueError(f"class_names has {len(names)} names for {len(palette)} palette colours")
  table = _color_table(palette)
  handles = [plt.Rectangle((0, 0), 1, 1, color=table[c] / 255) for c in ids]
  return handles, [names[c] if c != IGNORE_INDEX else "ignore" for c in ids]


def save_prediction_grid(path, images, labels, preds, palette, class_names=None):
  """One row per example: image | truth | prediction(s), and a legend of the classes shown.

  images (N, H, W, 3) uint8 (or float in [0, 1]); labels (N, H, W) ids; preds
  (N, H, W) ids, or {column title: (N, H, W) ids} to compare several models
  on the same images.
  """
  preds = dict(preds) if isinstance(preds, dict) else {"prediction": preds}
  n = len(images)
  if not n or len(labels) != n or any(len(p) != n for p in preds.values()):
    raise ValueError(f"need as many images, labels and preds (> 0), got "
                     f"{len(images)}, {len(labels)}, {[len(p) for p in preds.values()]}")
  rows = [[_as_uint8_image(images[i]), colorize(labels[i], palette)] +
          [colorize(p[i], palette) for p in preds.values()] for i in range(n)]
  ids = np.unique(np.concatenate([np.ravel(labels)] +
                                 [np.ravel(p) for p in preds.values()])).tolist()
  handles, names = _legend_handles(palette, ids, class_names)
  titles = ["image", "truth"] + list(preds)
  cols = len(titles)
  with _figure(path, n, cols, figsize=(2.5 * cols, 2.5 * n), squeeze=False) as (fig, axes):
    for i, row in enumerate(rows):
      for ax, title, picture in zip(axes[i], titles, row):
        ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        if i == 0:
          ax.set_title(title)
    fig.tight_layout()
    # Below the panels; savefig's bbox_inches="tight" keeps it in the picture.
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(names), 6), fontsize=8)


@contextlib.contextmanager
def _step_panels(path, titles, width=4.0, height=3.0):
  """One panel per title, three per row, x = step; yields the axes in order."""
  cols = min(len(titles), 3)
  rows = -(-len(titles) // cols)
  with _figure(path, rows, cols, figsize=(width * cols, height * rows), squeeze=False) as (
      fig, axes):
    for ax in axes.ravel()[len(titles):]:
      ax.set_axis_off()
    for ax, title in zip(axes.ravel(), titles):
      ax.set_title(title)
      ax.set_xlabel("step")
      ax.grid(alpha=0.3)
    yield axes.ravel()[:len(titles)]
    fig.tight_layout()


def plot_curves(path, history, shade=None):
  """history: {name: [(step, value), ...]} or {name: {label: [(step, value), ...]}};
  one panel per name, step on x, one line per label (with a legend).
  shade: (first step, last step) drawn as a grey band in every panel (a window a
  rule reads, e.g. the last 20 % of a budget), or {name: (first, last)} per panel."""
  history = {k: v if isinstance(v, dict) else {"": v} for k, v in history.items()}
  history = {k: {lab: p for lab, p in v.items() if len(p)} for k, v in history.items()}
  history = {k: v for k, v in history.items() if v}
  if not history:
    raise ValueError("plot_curves: history has no points")
  with _step_panels(path, list(history)) as axes:
    for ax, (name, lines) in zip(axes, history.items()):
      for lab, points in lines.items():
        steps, values = zip(*points)
        ax.plot(steps, values, marker="." if len(points) < 30 else None, label=lab or None)
      window = shade.get(name) if isinstance(shade, dict) else shade
      if window is not None:
        ax.axvspan(*window, color="0.5", alpha=0.15, lw=0)
      if len(lines) > 1:
        ax.legend(fontsize=7)


def plot_ablation(path, rows, metric, group, label, error=None):
  """Grouped bar chart of rows[i][metric], values written on the bars.

  One cluster on the x axis per distinct rows[i][group], one bar (colour,
  legend entry) per distinct rows[i][label]; e.g. group='metric' (mIoU,
  boundary IoU), label='variant' (upsampling operator). error: a field of
  error-bar half-lengths (e.g. the std over seeds; NaN draws none).
  """
  for key in (metric, group, label):
    missing = [i for i, r in enumerate(rows) if key not in r]
    if missing:
      raise ValueError(f"plot_ablation: rows {missing[:5]} have no field {key!r}")
  groups = list(dict.fromkeys(r[group] for r in rows))
  labels = list(dict.fromkeys(r[label] for r in rows))
  width = 0.8 / max(len(labels), 1)
  with _figure(path, figsize=(2 + 0.6 * len(groups) * len(labels), 3.5)) as (fig, ax):
    for k, name in enumerate(labels):
      offset = (k - (len(labels) - 1) / 2) * width
      points = [(g + offset, float(r[metric]), float(r[error]) if error else 0.0)
                for g, value in enumerate(groups)
                for r in rows if r[group] == value and r[label] == name]
      if points:
        xs, ys, errs = zip(*points)
        errs = [0.0 if np.isnan(e) else e for e in errs]
        bars = ax.bar(xs, ys, width, label=str(name), yerr=errs if error else None,
                      capsize=2 if error else 0)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, title=label, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()


def markdown_table(rows, columns):
  """A Markdown table of rows (dicts) over columns; floats with 4 decimals, missing
  or None empty."""
  fmt = lambda v: (f"{v:.4f}" if isinstance(v, (float, np.floating))
                   else "" if v is None else str(v))
  lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r[c]) if c in r else "" for c in columns) + " |" for r in rows]
  return "\n".join(lines)


def plot_forest(path, rows, margin=None, xlabel="paired difference (mIoU)"):
  """Forest plot: one line per row {'contrast', 'mean', 'low', 'high'} (an
  interval around a point), a zero line, and +-margin shaded if given."""
  if not rows:
    raise ValueError("plot_forest: no rows")
  with _figure(path, figsize=(7, 0.9 + 0.38 * len(rows))) as (fig, ax):
    ys = np.arange(len(rows))[::-1]
    for y, row in zip(ys, rows):
      ax.plot([row["low"], row["high"]], [y, y], color="C0", lw=2)
      ax.plot(row["mean"], y, "o", color="C3" if row.get("resolved") else "C0")
    if margin:
      ax.axvspan(-margin, margin, color="0.85", zorder=0)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, [r["contrast"] for r in rows], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()


def plot_seed_curves(path, curves):
  """curves: {panel: {label: {seed: [(step, value), ...]}}}: per panel one line
  per label (the mean over seeds at each step) in a band from the lowest to
  the highest seed."""
  curves = {k: v for k, v in curves.items() if v}
  if not curves:
    raise ValueError("plot_seed_curves: no points")
  with _step_panels(path, list(curves), width=4.5, height=3.2) as axes:
    for ax, by_label in zip(axes, curves.values()):
      for k, (lab, seeds) in enumerate(by_label.items()):
        steps = sorted(set.intersection(*(set(s for s, _ in p) for p in seeds.values())))
        values = np.array([[dict(p)[s] for s in steps] for p in seeds.values()])
        ax.plot(steps, values.mean(0), color=f"C{k}", label=lab)
        ax.fill_between(steps, values.min(0), values.max(0), color=f"C{k}", alpha=0.15)
      ax.legend(fontsize=7)


def plot_internals(path, image, rows):
  """One row per model: the image, then its panels (each a 2-D map or kernel with
  its colour bar). rows: {row label: [(title, 2-D array)]}."""
  cols = 1 + max(len(panels) for panels in rows.values())
  with _figure(path, len(rows), cols, figsize=(2.6 * cols, 2.4 * len(rows)),
               squeeze=False) as (fig, axes):
    for i, (label, panels) in enumerate(rows.items()):
      axes[i, 0].imshow(_as_uint8_image(image))
      axes[i, 0].set_title(label, fontsize=9)
      for ax, (title, values) in zip(axes[i, 1:], panels):
        im = ax.imshow(values, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
      for ax in axes[i]:
        ax.set_axis_off()
    fig.tight_layout()
