"""The upsampling study: every decoder upsampling operator x seeds, in one command.

    python experiments/upsampling_study.py --workdir=runs/upsampling_study

The model (`fcnjax.models.UpsamplingDecoderNet`) is an encoder with switch
pools and a skip-free decoder of x2 stages, each *upsample -> conv-BN-ReLU*:
the operator is the only variable. Every entry of
`fcnjax.models.DECODER_UPSAMPLERS` is trained with each seed; WORKDIR gets
results.md (mIoU, boundary IoU, pixel acc as mean ± std, parameters, step ms,
compiled peak memory, bytes kept for unpooling), results.json, ablation.png,
curves.png and predictions.png. Config fields can be overridden as in
training (e.g. --config.num_train_steps=3000 on a GPU). Re-running resumes.
"""
import os

from absl import app, flags

from fcnjax import study

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
  del argv
  from fcnjax import cli, models
  cli.start()
  FLAGS = flags.FLAGS
  variants = FLAGS.variants or list(models.DECODER_UPSAMPLERS)
  points = [{"model.upsample": v, "seed": int(s)} for v in variants for s in FLAGS.seeds]
  _, _, table = study.run_study(FLAGS.config, FLAGS.workdir, points)
  print(table)


if __name__ == "__main__":
  study.define_flags(os.path.join(HERE, "configs/upsampling_study.py"), "runs/upsampling_study")
  flags.DEFINE_list("variants", None, "Decoder upsamplers (default: all registered).")
  app.run(main)
