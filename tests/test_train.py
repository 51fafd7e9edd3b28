"""End to end on the tiny shapes dataset: train, resume, evaluate, predict."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from fcnjax import configs as config_lib
from fcnjax.studies import experiment
from fcnjax import inference
from fcnjax.data import pipeline
from fcnjax.train import assemble, checkpoint, loop, parallel
from fcnjax.train import losses as loss_lib
from fcnjax.train import step as step_lib


def tiny_config(data_dir, **overrides):
  config = config_lib.default_config()
  config.data.tfds_config = "tiny"
  config.data.data_dir = str(data_dir)
  config.data.crop_size = 32
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.optimizer.warmup_steps = 0
  config.optimizer.schedule = "constant"
  return experiment.with_fields(config, overrides)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def _params(workdir, config):
  info = pipeline.get_info(config.data)
  state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
  return checkpoint.restore_state(str(workdir), state, which="latest")


def test_twenty_steps_lower_the_loss(data_dir):
  config = tiny_config(data_dir, **{"optimizer.learning_rate": 3e-3})
  info = pipeline.get_info(config.data)
  state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
  driver = parallel.make_driver("jit", loss_fn=loss_lib.make_loss("ce"),
                                num_classes=info.num_classes)
  state = driver.put_state(state)
  batches = pipeline.train_batches(config.data, 8, seed=0)
  losses = []
  for _ in range(20):
    state, metrics = driver.train(state, next(batches), jax.random.key(0))
    losses.append(float(metrics["loss"]))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_bfloat16_trains_like_float32(data_dir):
  """Same init, same batches: the bf16-compute run's losses track f32's."""
  losses = {}
  for dtype in ("float32", "bfloat16"):
    config = tiny_config(data_dir, dtype=dtype, **{"optimizer.learning_rate": 3e-3})
    info = pipeline.get_info(config.data)
    state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
    driver = parallel.make_driver("jit", loss_fn=loss_lib.make_loss("ce"),
                                num_classes=info.num_classes)
    state, batches = driver.put_state(state), pipeline.train_batches(config.data, 8, seed=0)
    losses[dtype] = []
    for _ in range(20):
      state, metrics = driver.train(state, next(batches), jax.random.key(0))
      losses[dtype].append(float(metrics["loss"]))
    assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))  # f32 master weights
  f32, bf16 = np.array(losses["float32"]), np.array(losses["bfloat16"])
  assert np.mean(bf16[-5:]) < 0.8 * np.mean(bf16[:5]), bf16  # it learns
  np.testing.assert_allclose(bf16, f32, rtol=0.1)  # and stays near f32 at every step
  assert not np.array_equal(bf16, f32)  # the compute dtype did change


def _tensorboard_scalars(workdir, tag):
  """[(step, value)] of `tag` as TensorBoard reads the event files (restart
  markers drop what an interrupted run logged past its checkpoint)."""
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(workdir), purge_orphaned_data=True)
  events.Reload()
  return [(e.step, e.value) for e in events.Scalars(tag)]


def test_resume_continues_exactly(data_dir, tmp_path):
  straight = tiny_config(data_dir)
  loop.train_and_evaluate(straight, str(tmp_path / "straight"))
  # Interrupted after step 3, then the same command again up to step 6.
  interrupted = tiny_config(data_dir, num_train_steps=3)
  loop.train_and_evaluate(interrupted, str(tmp_path / "resumed"))
  assert int(_params(tmp_path / "resumed", straight).step) == 3
  loop.train_and_evaluate(tiny_config(data_dir, parallel="jit"), str(tmp_path / "resumed"))
  a = _params(tmp_path / "straight", straight)
  b = _params(tmp_path / "resumed", straight)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)  # bit-exact: same batches, same steps
  assert os.path.exists(tmp_path / "straight" / "curves.png")
  histories = []
  for run in ("straight", "resumed"):
    with open(tmp_path / run / "history.json") as f:
      histories.append(json.load(f))
  straight_h, resumed_h = histories  # the resumed run kept its first part (steps 2, 3)
  assert [p[0] for p in resumed_h["train_loss"]] == [2, 3, 4, 6]
  assert resumed_h["train_loss"][0] == straight_h["train_loss"][0]
  assert resumed_h["train_loss"][-1] == straight_h["train_loss"][-1]  # window of steps 5, 6
  assert resumed_h["eval_mean_iou"][-1] == straight_h["eval_mean_iou"][-1]
  # A crash after logging steps 4-6 but before saving step 6: the rerun resumes
  # from step 3 and logs them again; TensorBoard shows each step once, with the
  # uninterrupted run's values.
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "6")
  loop.train_and_evaluate(straight, str(tmp_path / "resumed"))
  for tag in ("train_loss", "eval_mean_iou"):
    expected = _tensorboard_scalars(tmp_path / "straight", tag)
    assert [s for s, _ in expected] == ([2, 3, 4, 6] if tag == "train_loss" else [3, 6])
    assert _tensorboard_scalars(tmp_path / "resumed", tag) == expected


def _numpy_scores(labels, preds, num_classes):
  """Independent reference: counts by explicit loops over classes."""
  valid = labels != 255
  hist = np.zeros((num_classes, num_classes), np.int64)
  for t in range(num_classes):
    for p in range(num_classes):
      hist[t, p] = np.sum(valid & (labels == t) & (preds == p))
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    acc = np.diag(hist) / hist.sum(1)
  freq = hist.sum(1) / hist.sum()
  return dict(pixel_acc=np.diag(hist).sum() / hist.sum(), mean_acc=np.nanmean(acc),
              mean_iou=np.nanmean(iou), fw_iou=np.nansum(freq * iou))


def test_evaluate_writes_results_matching_numpy_and_predict(data_dir, tmp_path):
  config = tiny_config(data_dir)
  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, str(workdir))
  results = inference.evaluate_workdir(config, str(workdir), which="latest")
  with open(workdir / "eval" / "results.json") as f:
    saved = json.load(f)
  for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou", "per_class_iou", "step"):
    assert key in saved
  assert saved["step"] == 6
  # Recompute with a plain jitted forward pass and numpy counting.
  state = _params(workdir, config)
  info = pipeline.get_info(config.data)
  labels, preds = [], []
  for batch in pipeline.eval_batches(config.data, 8):
    p, _ = jax.jit(step_lib.predict_step)(state, batch["image"])
    labels.append(batch["label"])
    preds.append(np.asarray(p))
  expected = _numpy_scores(np.concatenate(labels), np.concatenate(preds), info.num_classes)
  for key, value in expected.items():
    np.testing.assert_allclose(saved[key], value, rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(results[key], value, rtol=1e-6, err_msg=key)
  # predict: palette PNGs whose pixel values are class ids.
  written = inference.predict_files(config, str(workdir),
                                      inference.list_images(str(workdir / "eval" / "images")),
                                      str(tmp_path / "pred"), which="latest")
  assert written
  mask = Image.open(written[0])
  assert mask.mode == "P"
  assert np.asarray(mask).max() < info.num_classes
  assert os.path.exists(written[0].replace(".png", "_overlay.png"))


def test_nonfinite_loss_stops_with_step_and_keeps_checkpoint(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=40, checkpoint_every_steps=1,
                       eval_every_steps=1000, **{"optimizer.name": "sgd",
                                                 "optimizer.learning_rate": 1e8})
  with pytest.raises(FloatingPointError, match=r"at step \d+"):
    loop.train_and_evaluate(config, str(tmp_path / "nan"))
  state = _params(tmp_path / "nan", config)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("driver_name", ["jit", "pmap"])
def test_a_nonfinite_step_leaves_the_whole_state_unchanged(data_dir, driver_name):
  config = tiny_config(data_dir)
  info = pipeline.get_info(config.data)
  state, _ = assemble.create_state(config, assemble.build_model(config, info), jax.random.key(0))
  driver = parallel.make_driver(driver_name, loss_fn=loss_lib.make_loss("ce"),
                                num_classes=info.num_classes)
  batch = next(pipeline.train_batches(config.data, 8, seed=0))
  before = driver.to_host(driver.put_state(state))
  poisoned = dict(batch, image=batch["image"].copy())
  poisoned["image"][3, 5, 7, 1] = np.nan
  after, metrics = driver.train(driver.put_state(state), poisoned, jax.random.key(0))
  assert not bool(np.asarray(metrics["finite"]).ravel()[0])
  after = driver.to_host(after)
  for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)):  # params, momenta,
    np.testing.assert_array_equal(x, y)                               # BN stats, step
  changed, _ = driver.train(driver.put_state(state), batch, jax.random.key(0))
  assert int(np.asarray(driver.to_host(changed).step)) == 1


def test_config_errors(data_dir, tmp_path):
  with pytest.raises(ValueError, match="num_classes"):
    loop.train_and_evaluate(tiny_config(data_dir, num_classes=3), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="upsample"):
    loop.train_and_evaluate(tiny_config(data_dir, **{"model.upsample": "cubic"}),
                            str(tmp_path / "b"))
  with pytest.raises(ValueError, match="batch_size"):
    loop.train_and_evaluate(tiny_config(data_dir, batch_size=12), str(tmp_path / "c"))
  with pytest.raises(ValueError, match="crop_size=16"):
    loop.train_and_evaluate(tiny_config(data_dir, **{"model.name": "segnet",
                                                     "data.crop_size": 16}), str(tmp_path / "e"))
  with pytest.raises(ValueError, match="optimizer.name"):
    loop.train_and_evaluate(tiny_config(data_dir, **{"optimizer.name": "lbfgs"}),
                            str(tmp_path / "d"))


def test_restore_onto_different_device_count(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=3)
  loop.train_and_evaluate(config, str(tmp_path / "w"))  # 8 devices, pmap
  one = tiny_config(data_dir, num_train_steps=3, num_devices=2, parallel="jit")
  a = inference.evaluate_workdir(config, str(tmp_path / "w"), which="latest")
  b = inference.evaluate_workdir(one, str(tmp_path / "w"), which="latest")
  np.testing.assert_allclose(a["mean_iou"], b["mean_iou"], rtol=1e-6)
