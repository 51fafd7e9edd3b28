"""FCN-8s (VGG16, same geometry) on Cityscapes fine annotations, 19 classes.

    python -m fcnjax.commands.train --config=fcn8s_cityscapes \
        --workdir=runs/fcn8s_cityscapes --config.data.data_dir=/data/tfds

tfds needs leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in
<data_dir>/downloads/manual (see docs/data.md).
"""
from fcnjax.configs import default_config


def get_config():
  config = default_config()
  config.data.name = "cityscapes"
  config.data.eval_split = "validation"
  config.data.crop_size = 512
  config.data.scale_range = (0.5, 1.0)
  config.model.backbone = "vgg16"
  config.model.dropout_rate = 0.5
  config.optimizer.update(dict(name="sgd", learning_rate=1e-2, momentum=0.9,
                               schedule="poly", warmup_steps=500, weight_decay=5e-4))
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 40_000
  config.eval_every_steps = 4000
  config.checkpoint_every_steps = 2000
  config.init_from = "vgg16.npz"
  return config
