"""Export a trained model's inference function with jax.export (StableHLO).

    fcnjax-export --config=fcn8s_shapes --workdir=runs/fcn8s_shapes \
        --out=runs/fcn8s_shapes/model.jaxexport

Writes OUT: (N, H, W, 3) uint8 RGB images (--input_dtype=float32: float32
values in 0..255) -> (N, H, W) int32 labels (--logits: and the (N, H, W, C)
float32 logits), normalisation and weights included; N symbolic, H and W
symbolic multiples of 32 (--image_size=any: any size, where the model's
geometry allows; --image_size=H,W: fixed). And OUT.json: the input shape,
outputs, class names and palette. Load it without fcnjax:
jax.export.deserialize(open(OUT, 'rb').read()).call(images) (docs/export.md).
"""
import json

from absl import flags

from fcnjax import exporting
from fcnjax.runtime import cli


def main(argv):
  del argv
  cli.start()
  description = exporting.export_model(
      cli.FLAGS.config, cli.FLAGS.workdir, cli.FLAGS.out, cli.FLAGS.checkpoint,
      cli.FLAGS.image_size, cli.FLAGS.input_dtype, cli.FLAGS.logits,
      tuple(cli.FLAGS.platforms) or None)
  print(f"wrote {cli.FLAGS.out} (+ .json): " + json.dumps(
      {k: description[k] for k in ("input", "outputs", "platforms", "step")}))


def run():
  cli.define_flags()
  flags.DEFINE_string("out", None, "The file to write (its folder must exist); its "
                      "description goes to OUT.json.")
  flags.DEFINE_string("checkpoint", "best", "Which checkpoint: best or latest.")
  flags.DEFINE_string("image_size", "", "Empty: H and W any multiples of 32 (symbolic); "
                      "'any': any H, W (FCN 'paper' geometry, ResNet backbones); 'H,W': "
                      "that size only (the models whose sizes cannot stay symbolic).")
  flags.DEFINE_string("input_dtype", "uint8", "uint8, or float32 (values in 0..255).")
  flags.DEFINE_bool("logits", False, "Return (labels, logits) instead of the labels alone.")
  flags.DEFINE_list("platforms", [], "Platforms to lower for, e.g. cpu,cuda (default: "
                    "this machine's JAX backend).")
  flags.mark_flag_as_required("out")
  cli.run(main, __name__)


if __name__ == "__main__":
  run()
