"""Evaluate a trained model on the validation split.

    python -m fcnjax.evaluate --config=experiments/configs/fcn8s_shapes.py --workdir=runs/fcn8s

Writes W/eval/results.json (pixel_acc, mean_acc, mean_iou, fw_iou,
per_class_iou, boundary IoU, step), W/eval/predictions.png and a few
validation images in W/eval/images/.
"""
import json
import os

from absl import app, flags

from fcnjax import cli

cli.define_flags()
flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to score.")
flags.DEFINE_integer("num_figure_images", 6, "Validation images in predictions.png.")


def evaluate_workdir(config, workdir, which="best", num_figure_images=6):
  """Restores the checkpoint, scores it, writes W/eval/; returns the results."""
  import jax
  import numpy as np
  from PIL import Image
  from fcnjax import viz
  from fcnjax.data import pipeline
  from fcnjax.train import checkpoint, loop, parallel
  from fcnjax.train import step as step_lib

  info = pipeline.get_info(config.data)
  loop.validate_config(config, info)
  model = loop.build_model(config, info)
  state, _ = loop.create_state(config, model, jax.random.key(config.seed))
  state = checkpoint.restore_state(workdir, state, which=which)
  driver = parallel.make_driver(config.parallel, loss_reduction=config.loss_reduction,
                                num_classes=info.num_classes,
                                boundary_width=config.boundary_width,
                                num_devices=config.get("num_devices"))
  results = loop.evaluate(driver, driver.put_state(state), config, info)
  results["step"] = int(state.step)
  out_dir = os.path.join(workdir, "eval")
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
    batch = next(iter(pipeline.eval_batches(config.data, num_figure_images)))
    preds, _ = jax.jit(step_lib.predict_step)(state, batch["image"])
    images = pipeline.denormalize(batch["image"], config.data.normalization)
    viz.save_prediction_grid(os.path.join(out_dir, "predictions.png"), images,
                             batch["label"], np.asarray(preds), info.palette,
                             class_names=info.class_names)
    # A few validation images as files, e.g. as --input for fcnjax.predict.
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    for i, image in enumerate(images):
      Image.fromarray(image).save(os.path.join(out_dir, "images", f"val_{i:03d}.png"))
  return results


def main(argv):
  del argv
  cli.start()
  results = evaluate_workdir(cli.FLAGS.config, cli.FLAGS.workdir, flags.FLAGS.checkpoint,
                             flags.FLAGS.num_figure_images)
  print(json.dumps({k: v for k, v in results.items() if not isinstance(v, list)}))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
