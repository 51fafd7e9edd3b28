"""viz: palette PNG round trip, colours, overlays, and plots written as PNGs."""

import numpy as np
import pytest
from PIL import Image

from fcnjax import viz
from fcnjax.data.palette import palette

# Published PASCAL VOC colours (VOCdevkit): background, aeroplane, person; ignore.
VOC_COLORS = {0: (0, 0, 0), 1: (128, 0, 0), 15: (192, 128, 128), 255: (224, 224, 192)}


def random_mask(rng, shape=(9, 11), num_classes=4):
  mask = rng.integers(0, num_classes, shape)
  mask[rng.random(shape) < 0.2] = 255
  return mask


def read_png(path):
  """The saved figure as (H, W, 3) uint8."""
  with Image.open(path) as image:
    assert image.format == "PNG" and min(image.size) > 50
    return np.asarray(image.convert("RGB"))


@pytest.fixture
def figures(monkeypatch):
  """The figures viz draws, kept open for inspection and closed afterwards."""
  import matplotlib.pyplot as plt
  close, kept = plt.close, []
  monkeypatch.setattr(plt, "close", kept.append)
  yield kept
  for fig in kept:
    close(fig)


def test_colorize_uses_palette_and_voc_ignore_colour():
  colors = palette(21)
  mask = np.array([[0, 1], [15, 255]])
  rgb = viz.colorize(mask, colors)
  assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
  for (i, j), c in np.ndenumerate(mask):
    assert tuple(rgb[i, j]) == VOC_COLORS[c]


def test_colorize_per_pixel_lookup():
  rng = np.random.default_rng(0)
  colors = rng.integers(0, 256, (4, 3)).astype(np.uint8)
  mask = random_mask(rng)
  rgb = viz.colorize(mask, colors)
  for (i, j), c in np.ndenumerate(mask):
    expected = VOC_COLORS[255] if c == 255 else tuple(colors[c])
    assert tuple(rgb[i, j]) == expected


def test_colorize_rejects_ids_outside_palette():
  with pytest.raises(ValueError, match="outside"):
    viz.colorize(np.array([[0, 4]]), palette(4))
  with pytest.raises(ValueError, match="palette"):
    viz.colorize(np.zeros((2, 2), int), np.zeros((4, 4), np.uint8))


def test_overlay_is_the_alpha_blend():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
  mask = random_mask(rng)
  colors = palette(4)
  out = viz.overlay(image, mask, colors, alpha=0.25)
  assert out.shape == image.shape and out.dtype == np.uint8
  table = {c: np.array(VOC_COLORS[255]) if c == 255 else colors[c].astype(float)
           for c in np.unique(mask)}
  for (i, j), c in np.ndenumerate(mask):
    expected = np.round(0.75 * image[i, j] + 0.25 * table[c])
    np.testing.assert_allclose(out[i, j], expected, atol=1)
  np.testing.assert_array_equal(viz.overlay(image, mask, colors, alpha=0.0), image)
  with pytest.raises(ValueError, match="sizes differ"):
    viz.overlay(image, mask[:5], colors)


def test_palette_png_round_trip(tmp_path):
  rng = np.random.default_rng(2)
  mask = random_mask(rng, (13, 17), num_classes=21)
  path = tmp_path / "nested" / "dir" / "mask.png"
  viz.save_palette_png(str(path), mask, palette(21))
  with Image.open(path) as image:
    assert image.mode == "P" and image.size == (17, 13)
    np.testing.assert_array_equal(np.asarray(image), mask)
    colors = np.array(image.getpalette()[:768]).reshape(256, 3)
  assert tuple(colors[1]) == VOC_COLORS[1] and tuple(colors[255]) == VOC_COLORS[255]
  with Image.open(path) as image:
    rgb = np.asarray(image.convert("RGB"))
  np.testing.assert_array_equal(rgb, viz.colorize(mask, palette(21)))


# Colours no part of a matplotlib figure uses, one per class.
GRID_COLORS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 200, 40]], np.uint8)


def test_save_prediction_grid_panels(tmp_path, figures):
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
  labels = random_mask(rng, (2, 16, 16))
  preds = rng.integers(0, 4, (2, 16, 16))
  path = tmp_path / "out" / "grid.png"
  viz.save_prediction_grid(str(path), images, labels, preds, GRID_COLORS,
                           class_names=["bg", "a", "b", "c"])
  axes = figures[-1].axes
  assert [ax.get_title() for ax in axes] == ["image", "truth", "prediction"] + [""] * 3
  for i in range(2):
    for ax, expected in zip(axes[3 * i:3 * i + 3], (images[i], viz.colorize(labels[i], GRID_COLORS),
                                                    viz.colorize(preds[i], GRID_COLORS))):
      np.testing.assert_array_equal(ax.images[0].get_array(), expected)
  legend = figures[-1].legends[0]
  assert [t.get_text() for t in legend.get_texts()] == ["bg", "a", "b", "c", "ignore"]
  # In the PNG each class colour covers an area proportional to its mask pixels.
  png = read_png(path)
  colors = {c: GRID_COLORS[c] for c in range(4)} | {255: np.array(VOC_COLORS[255])}
  masks = np.concatenate([labels.ravel(), preds.ravel()])
  ratios = [np.all(png == rgb, -1).sum() / np.sum(masks == c) for c, rgb in colors.items()]
  assert min(ratios) > 0.95 * max(ratios) and min(ratios) > 50, ratios
  viz.save_prediction_grid(str(tmp_path / "floats.png"), images / 255.0, labels, preds,
                           GRID_COLORS)
  np.testing.assert_array_equal(figures[-1].axes[0].images[0].get_array(), images[0])
  with pytest.raises(ValueError, match="class_names"):
    viz.save_prediction_grid(str(tmp_path / "x.png"), images, labels, preds, GRID_COLORS,
                             class_names=["bg"])


def test_plot_curves_draws_each_series(tmp_path, figures):
  history = {"train_loss": [(1, 2.0), (2, 1.5), (3, 1.2)],
             "eval_mean_iou": {"seed 0": [(2, 0.3), (3, 0.4)], "seed 1": [(2, 0.2)]},
             "lr": [(1, 0.1), (3, 0.05)], "empty": []}
  path = tmp_path / "a" / "curves.png"
  viz.plot_curves(str(path), history)
  assert read_png(path).shape[1] > 600  # three panels side by side
  axes = [ax for ax in figures[-1].axes if ax.get_title()]
  assert [ax.get_title() for ax in axes] == ["train_loss", "eval_mean_iou", "lr"]
  drawn = [[line.get_xydata().tolist() for line in ax.lines] for ax in axes]
  assert drawn == [[[[1, 2.0], [2, 1.5], [3, 1.2]]], [[[2, 0.3], [3, 0.4]], [[2, 0.2]]],
                   [[[1, 0.1], [3, 0.05]]]]
  assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["seed 0", "seed 1"]
  with pytest.raises(ValueError, match="no points"):
    viz.plot_curves(str(tmp_path / "empty.png"), {"loss": []})


def test_the_budget_pilot_figure_draws_each_seed_per_arm_and_the_window_the_rule_reads(
    tmp_path, figures):
  from fcnjax.studies import study_report
  rows = [{"arm": "nearest", "seed": 0, "steps": 1000,
           "curve": [(300, 0.2), (600, 0.5), (1000, 0.52)]},
          {"arm": "nearest", "seed": 1, "steps": 1000, "curve": [(300, 0.1), (1000, 0.4)]},
          {"arm": "carafe", "seed": 0, "steps": 500, "curve": []},  # nothing evaluated yet
          {"arm": "carafe", "seed": 1, "steps": 500, "curve": [(300, 0.3), (500, 0.6)]},
          {"arm": "bilinear", "seed": 0, "steps": 1000, "curve": None}]  # not started
  path = tmp_path / "selection_curves.png"
  assert study_report.plot_selection_curves(str(path), rows)
  assert read_png(path).shape[1] > 400
  axes = [ax for ax in figures[-1].axes if ax.get_title()]
  assert [ax.get_title() for ax in axes] == ["nearest", "carafe"]
  assert [[line.get_xydata().tolist() for line in ax.lines] for ax in axes] == [
      [[[300, 0.2], [600, 0.5], [1000, 0.52]], [[300, 0.1], [1000, 0.4]]],
      [[[300, 0.3], [500, 0.6]]]]
  assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["seed 0", "seed 1"]
  for ax, window in zip(axes, [(800, 1000), (400, 500)]):  # the last 20 % of each budget
    (band,) = ax.patches
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx(window)
  empty = tmp_path / "none.png"
  assert not study_report.plot_selection_curves(str(empty), [rows[2], rows[4]])
  assert not empty.exists()


def test_plot_ablation_bars(tmp_path, figures):
  scores = {"bilinear": (0.61, 0.42), "transpose": (0.65, 0.47), "nearest": (0.58, 0.35)}
  rows = [{"variant": v, "metric": m, "value": x} for v, pair in scores.items()
          for m, x in zip(("mean_iou", "boundary_iou"), pair)]
  path = tmp_path / "b" / "ablation.png"
  viz.plot_ablation(str(path), rows, metric="value", group="metric", label="variant")
  read_png(path)
  ax = figures[-1].axes[0]
  bars = [(round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in ax.patches]
  width = 0.8 / 3
  expected = [(round(g + (k - 1) * width, 6), pair[g])
              for k, pair in enumerate(scores.values()) for g in range(2)]
  assert bars == expected  # one cluster per metric, one bar per variant in order
  assert [t.get_text() for t in ax.get_xticklabels()] == ["mean_iou", "boundary_iou"]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == list(scores)
  labels = [t.get_text() for t in ax.texts]
  assert labels == [f"{x:.3f}" for pair in scores.values() for x in pair]
  with pytest.raises(ValueError, match="'score'"):
    viz.plot_ablation(str(tmp_path / "x.png"), rows, metric="score", group="metric",
                      label="variant")


def test_figures_are_closed(tmp_path):
  import matplotlib.pyplot as plt
  before = len(plt.get_fignums())
  viz.plot_curves(str(tmp_path / "c.png"), {"loss": [(0, 1.0), (1, 0.5)]})
  with pytest.raises(ValueError):
    viz.save_prediction_grid(str(tmp_path / "g.png"), np.zeros((1, 4, 4, 3), np.uint8),
                             np.full((1, 4, 4), 9), np.zeros((1, 4, 4), int), palette(2))
  with pytest.raises(ValueError):  # fails while drawing: not a number
    viz.plot_ablation(str(tmp_path / "a.png"), [{"g": 1, "l": "x", "v": "high"}], "v", "g", "l")
  assert not (tmp_path / "a.png").exists()
  assert len(plt.get_fignums()) == before


def test_markdown_table():
  rows = [{"upsample": "bilinear", "mean_iou": 0.61234, "steps": 10},
          {"upsample": "transpose", "mean_iou": np.float32(0.5)},
          {"upsample": "nearest", "mean_iou": None, "steps": 3}]
  table = viz.markdown_table(rows, ["upsample", "mean_iou", "steps"])
  assert table.splitlines() == [
      "| upsample | mean_iou | steps |",
      "|---|---|---|",
      "| bilinear | 0.6123 | 10 |",
      "| transpose | 0.5000 |  |",
      "| nearest |  | 3 |",
  ]


def test_image_mask_grid_stacks_images_over_palette_masks():
  """At the images' own size the grid is the images side by side over
  palette[mask] side by side, pixel for pixel."""
  rng = np.random.default_rng(0)
  pal = palette(5)
  images = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
  masks = rng.integers(0, 5, (2, 6, 6))
  grid = viz.image_mask_grid(list(zip(images, masks)), pal, 6)
  assert grid.shape == (12, 12, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[:6], np.concatenate(images, axis=1))
  np.testing.assert_array_equal(grid[6:], np.concatenate(pal[masks], axis=1))
  with pytest.raises(ValueError, match="no \\(image, mask\\) pairs"):
    viz.image_mask_grid([], pal, 6)
