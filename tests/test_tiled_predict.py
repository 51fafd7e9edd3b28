"""Tiled inference (fcnjax.tiles): the windows cover the image with aligned
starts and a halo, and the tiled labels of the default model (FCN-8s, small
BN VGG, 'same' geometry) in eval mode equal one full-image pass exactly;
predict writes the same masks tiled or not and goes on past a failing image.
Test-time augmentation (`step.TTA`): the averaged softmax of the scaled and
mirrored passes against a hand-written loop (PyTorch's bilinear resize, numpy's
softmax), within each tile when tiled, and beside the plain scores in
fcnjax-evaluate's results."""
import json
import os

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fcnjax import inference, tiles
from fcnjax.commands import predict
from fcnjax.data import pipeline, shapes
from fcnjax.train import assemble, checkpoint, step
from test_train import tiny_config


@pytest.mark.parametrize("core, halo", [(32, 32), (64, 224), (128, 96)])
def test_windows_cover_the_axis_with_aligned_starts_and_a_halo(core, halo):
  for length in list(range(1, 700, 7)) + [8000]:
    spans = tiles.windows(length, core, halo)
    kept = np.zeros(length, int)
    for start, end, keep0, keep1 in spans:
      assert start % tiles.STRIDE == 0 and 0 <= start < end <= length
      assert start <= keep0 < keep1 <= end
      kept[keep0:keep1] += 1
      # a kept pixel is >= halo from every edge of its window that is not the image's
      assert start == 0 or keep0 - start >= halo
      assert end == length or end - keep1 >= halo
      assert end - start <= max(length, core + 2 * halo + tiles.STRIDE - 1)
    assert (kept == 1).all(), length
    assert len(spans) == 1 or length > core + 2 * halo


def test_windows_refuse_unaligned_sizes():
  with pytest.raises(ValueError, match="multiples of 32"):
    tiles.windows(100, 48, 32)


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
  """(config, state, workdir): the default model with random weights and BN
  statistics (so eval-mode BN is not the identity), class logits centred on
  shapes images so that the labels are mixed; saved as a checkpoint."""
  root = tmp_path_factory.mktemp("tiled")
  config = tiny_config(root / "tfds", **{"model.zero_init_score": False})
  info = pipeline.get_info(config.data)
  state = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))[0]
  rng = np.random.default_rng(0)
  stats = jax.tree_util.tree_map_with_path(
      lambda p, x: (0.1 * rng.normal(size=x.shape) if p[-1].key == "mean"
                    else rng.uniform(0.5, 1.5, x.shape)).astype(np.float32), state.batch_stats)
  state = state.replace(batch_stats=stats)
  mean = _logits(state, _image(256, 256)).mean((0, 1))
  params = jax.tree.map(np.asarray, state.params)
  params["score_pool3"]["bias"] = params["score_pool3"]["bias"] - mean
  state = state.replace(params=params)
  ckpt = checkpoint.Checkpoints(str(root / "w"))
  ckpt.save(1, state)
  ckpt.close()
  return config, state, str(root / "w")


def _image(height, width):
  """Shapes examples (128x128) laid side by side, cut to (height, width, 3)."""
  rows = -(-height // 128)
  cols = -(-width // 128)
  grid = [[shapes.render_example(7, r * cols + c, 128)[0] for c in range(cols)]
          for r in range(rows)]
  return np.concatenate([np.concatenate(row, 1) for row in grid], 0)[:height, :width]


def _logits(state, image):
  x = pipeline.normalize(image, "imagenet")[None]
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return np.asarray(state.apply_fn(variables, x, train=False))[0]


def test_tiled_labels_equal_one_full_image_pass(default_model):
  _, state, _ = default_model
  image = _image(700, 620)
  full = _logits(state, image).argmax(-1)  # the reference: model.apply on the whole image
  assert (np.bincount(full.ravel()) > 0.04 * full.size).sum() >= 4  # mixed labels
  halo = tiles.receptive_margin(state)
  # The convolutions alone reach 2 * (1 + 2 + 4 + 8 + 16) = 62 px and fc6 (7x7
  # at stride 32) 96 px more: the measured margin covers at least that.
  assert 62 + 96 <= halo <= 512 and halo % 32 == 0
  norm = lambda x: pipeline.normalize(x, "imagenet")
  assert len(tiles.windows(700, 64, halo)) > 2  # really tiled
  tiled = tiles.predict_tiled(state, image, norm, 64, halo)
  np.testing.assert_array_equal(tiled, full)  # exact: no tolerance
  too_small = tiles.predict_tiled(state, image, norm, 128, 32)
  assert (too_small != full).mean() > 0.01  # the halo is what makes it exact


def test_default_core_fits_the_budget():
  core = tiles.default_core(200.0, 224, budget=512 * 2 ** 20)
  assert core % 32 == 0 and (core + 448) ** 2 * 200 <= 512 * 2 ** 20
  assert (core + 32 + 448) ** 2 * 200 > 512 * 2 ** 20
  assert tiles.default_core(1e6, 224) == 32  # never below one stride


def test_the_automatic_tile_budgets_the_whole_process(monkeypatch):
  """The window is what 2 GB leave beside resident memory, the image's
  buffers (decoded twice, labels, overlay: 10 bytes a pixel for RGB) and a
  192 MiB reserve."""
  resident, per_pixel, halo = 700 * 2 ** 20, 210.0, 224
  monkeypatch.setattr(tiles, "resident_bytes", lambda: resident)
  monkeypatch.setattr(tiles, "receptive_margin", lambda state, channels=3: halo)
  monkeypatch.setattr(tiles, "bytes_per_pixel", lambda state, tta=None, channels=3: per_pixel)
  cores = []
  for pixels in (0, 4000 * 4000, 8000 * 8000):
    core, _ = inference.tiling(None, 0, pixels=pixels)
    left = 2 * 10 ** 9 - resident - 10 * pixels - 192 * 2 ** 20
    assert core % 32 == 0 and (core + 2 * halo) ** 2 * per_pixel <= left
    assert (core + 32 + 2 * halo) ** 2 * per_pixel > left  # the largest that fits
    cores.append(core)
  assert cores[0] > cores[1] > cores[2]
  monkeypatch.setattr(tiles, "resident_bytes", lambda: None)  # cannot tell: 512 MiB
  assert inference.tiling(None, 0, pixels=8000 * 8000)[0] == tiles.default_core(per_pixel, halo)


def test_tta_passes_run_one_at_a_time_in_a_window(default_model):
  """A window's TTA memory is its largest pass plus the running sum, less than
  the six passes compiled as one program take."""
  _, state, _ = default_model
  tta, size = step.TTA((0.75, 1.0, 1.25), True), 128
  x = jax.numpy.zeros((1, size, size, 3), jax.numpy.float32)
  fused = jax.jit(step.predict_labels, static_argnames="tta").lower(
      state, x, tta).compile().memory_analysis()
  fused = (fused.temp_size_in_bytes + fused.output_size_in_bytes + x.nbytes) / size ** 2
  assert tiles.bytes_per_pixel(state, size, tta) < fused
  assert tiles.bytes_per_pixel(state, size) < tiles.bytes_per_pixel(state, size, tta)


def test_predict_tiled_equals_untiled_and_names_a_failure(default_model, tmp_path,
                                                          monkeypatch, capsys):
  config, _, workdir = default_model
  folder = tmp_path / "in"
  folder.mkdir()
  Image.fromarray(_image(560, 640)).save(folder / "a.png")
  Image.fromarray(_image(100, 90)).save(folder / "c.png")
  Image.fromarray(_image(64, 64)).save(folder / "b.png")
  assert predict.predict(config, workdir, str(folder), str(tmp_path / "full"), "latest",
                         tile=None) == 0
  real = inference.predict_image

  def fails_on_b(state, image, *args):
    if image.shape[:2] == (64, 64):
      raise MemoryError("out of memory (test)")
    return real(state, image, *args)

  monkeypatch.setattr(inference, "predict_image", fails_on_b)
  status = predict.predict(config, workdir, str(folder), str(tmp_path / "tiled"), "latest",
                           tile=64)
  assert status == 1
  assert "2 predicted, 1 skipped (failed: b.png (MemoryError: out of memory (test)))" in (
      capsys.readouterr().err)
  for name in ("a", "c"):  # c, after the failure, is predicted too
    with Image.open(tmp_path / "full" / f"{name}.png") as f, \
         Image.open(tmp_path / "tiled" / f"{name}.png") as g:
      np.testing.assert_array_equal(np.asarray(f), np.asarray(g))
  assert not os.path.exists(tmp_path / "tiled" / "b.png")


def test_tiled_evaluation_scores_like_the_devices(default_model):
  config, _, workdir = default_model
  on_devices = inference.evaluate_workdir(config, workdir, "latest", num_figure_images=2,
                                          tta=step.TTA((1.0,), False))  # + one host pass
  on_host = on_devices.pop("tta")
  assert on_host.pop("scales") == [1.0] and on_host.pop("flip") is False
  tiled = inference.evaluate_workdir(config, workdir, "latest", num_figure_images=2, tile=32)
  assert on_devices["num_pixels"] == tiled["num_pixels"] > 0
  assert 0 < on_devices["mean_iou"] < 1
  for key, value in on_devices.items():
    np.testing.assert_allclose(tiled[key], value, rtol=1e-6, err_msg=key)
    if key != "step":
      np.testing.assert_allclose(on_host[key], value, rtol=1e-6, err_msg=key)


def test_a_full_pass_that_cannot_fit_is_refused_not_aborted():
  inference.check_fits((100, 100), 200.0)  # 2 MB: fits
  with pytest.raises(MemoryError, match=r"100000x100000 in one pass needs about 1862\.6 GB"):
    inference.check_fits((100_000, 100_000), 200.0)


def _resize(x, size):
  """(N, H, W, C) float32 -> (N, h, w, C): bilinear, half-pixel centres, no antialiasing."""
  t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
  out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=False)
  return out.permute(0, 2, 3, 1).numpy()


def _reference_probabilities(state, images, scales, flip):
  """The passes written out: resize, mirror, logits, mirror back, resize back, softmax."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  n, h, w, _ = images.shape
  probs = []
  for s in scales:
    x = _resize(images, (round(s * h), round(s * w)))
    for mirror in ([False, True] if flip else [False]):
      logits = np.asarray(state.apply_fn(variables, x[:, :, ::-1] if mirror else x,
                                         train=False), np.float32)
      logits = _resize(logits[:, :, ::-1] if mirror else logits, (h, w)).astype(np.float64)
      e = np.exp(logits - logits.max(-1, keepdims=True))
      probs.append(e / e.sum(-1, keepdims=True))
  return np.mean(probs, axis=0)


def test_tta_probabilities_equal_the_passes_written_out(default_model):
  _, state, _ = default_model
  images = pipeline.normalize(np.stack([_image(64, 96), _image(64, 96)[::-1]]), "imagenet")
  tta = step.TTA((0.75, 1.25), True)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  apply = lambda x: state.apply_fn(variables, x, train=False)
  got = np.asarray(jax.jit(step.tta_probabilities, static_argnums=(0, 2))(apply, images, tta))
  want = _reference_probabilities(state, images, tta.scales, tta.flip)
  np.testing.assert_allclose(got, want, atol=2e-5)  # float32 resizes and convolutions
  plain = _reference_probabilities(state, images, (1.0,), False)
  assert np.abs(want - plain).max() > 100 * 2e-5  # the passes really differ
  labels = np.asarray(step.predict_labels(state, images, tta))
  assert (labels == want.argmax(-1)).mean() > 0.999  # ties aside


def test_tta_runs_inside_each_tile(default_model):
  _, state, _ = default_model
  image, tta, core, halo = _image(128, 192), step.TTA((1.5,), True), 64, 32
  norm = lambda x: pipeline.normalize(x, "imagenet")
  got = tiles.predict_tiled(state, image, norm, core, halo, tta)
  want = np.zeros(image.shape[:2], np.int64)
  for y0, y1, ky0, ky1 in tiles.windows(image.shape[0], core, halo):
    for x0, x1, kx0, kx1 in tiles.windows(image.shape[1], core, halo):
      probs = _reference_probabilities(state, norm(image[y0:y1, x0:x1])[None], tta.scales,
                                       tta.flip)[0]
      want[ky0:ky1, kx0:kx1] = probs.argmax(-1)[ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
  assert len(tiles.windows(192, core, halo)) > 1
  assert (got == want).mean() > 0.999


def test_evaluate_reports_the_plain_and_the_augmented_scores(default_model):
  config, _, workdir = default_model
  both = inference.evaluate_workdir(config, workdir, "latest", num_figure_images=2,
                                    tta=step.TTA((0.75, 1.25), True))
  with open(os.path.join(workdir, "eval", "results.json")) as f:
    assert json.load(f) == both  # the plain scores and, under 'tta', the augmented
  assert both["tta"]["scales"] == [0.75, 1.25] and both["tta"]["flip"] is True
  assert both["tta"]["num_pixels"] == both["num_pixels"]
  assert both["tta"]["mean_iou"] != both["mean_iou"]


@pytest.mark.parametrize("scales, flip, match", [
    (["0.75", "0"], False, r"^--tta_scales=0\.75,0\.0: every scale must be > 0$"),
    (["-1"], True, r"^--tta_scales=-1\.0: every scale must be > 0$"),
    (["big"], False, r"^--tta_scales=\['big'\]: expected numbers > 0"),
])
def test_bad_tta_scales_are_refused_by_name(scales, flip, match):
  with pytest.raises(ValueError, match=match):
    step.check_tta(scales, flip)
  assert step.check_tta([], False) is None
  assert step.check_tta([], True) == step.TTA((1.0,), True)


def test_predict_with_tta_writes_the_augmented_labels(default_model, tmp_path):
  """`predict_each` with a TTA: the mask file holds the labels of the passes
  written out (one full-image pass, so no tiling is involved)."""
  config, state, workdir = default_model
  image = _image(64, 96)
  Image.fromarray(image).save(tmp_path / "a.png")
  tta = step.TTA((0.75, 1.25), True)
  [(_, out, error)] = list(inference.predict_each(config, workdir, [str(tmp_path / "a.png")],
                                                  str(tmp_path / "out"), "latest", None, tta))
  assert error is None
  want = _reference_probabilities(state, pipeline.normalize(image, "imagenet")[None],
                                  tta.scales, tta.flip)[0].argmax(-1)
  with Image.open(out) as mask:
    assert (np.asarray(mask) == want).mean() > 0.999  # ties aside
