"""FCN-8s (VGG16, same geometry) on Oxford-IIIT Pet: pet / background, border ignored.

    python -m fcnjax.commands.train --config=fcn8s_pets --workdir=runs/fcn8s_pets \
        --config.init_from=vgg16.npz

tfds prepares `oxford_iiit_pet` in --config.data.data_dir on first use (its
download needs network access once; offline, copy a prepared tfds folder there).
"""
from fcnjax.configs import default_config


def get_config():
  config = default_config()
  config.data.name = "pets"
  config.data.eval_split = "test"
  config.data.crop_size = 256
  config.model.backbone = "vgg16"
  config.model.dropout_rate = 0.5
  config.optimizer.update(dict(name="sgd", learning_rate=1e-3, momentum=0.9,
                               schedule="poly", warmup_steps=200, weight_decay=5e-4))
  config.batch_size = 16
  config.eval_batch_size = 1  # native size
  config.num_train_steps = 10_000
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  config.init_from = "vgg16.npz"
  return config
