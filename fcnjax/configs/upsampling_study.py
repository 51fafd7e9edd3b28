"""The upsampling study's base config: the skip-free decoder on shapes.

Every x2 decoder stage is *upsample -> conv-BN-ReLU*; the study sweeps
model.upsample over `fcnjax.models.DECODER_UPSAMPLERS` and the seed:

    python experiments/upsampling_study.py --workdir=runs/upsampling_study

64x64 crops of the 128x128 shapes images, batch 16, 900 Adam steps (cosine),
evaluation on the 200 validation images at full size every 300 steps: about
3 minutes per run on 2 CPU cores. For a GPU, scale up from here:
--config.data.crop_size=128 --config.num_train_steps=5000
--config.model.backbone=vgg16.
"""
from fcnjax.config import study_config


def get_config():
  config = study_config(num_train_steps=900)
  config.model.name = "decoder"
  config.model.upsample = "max_unpool"
  config.model.backbone = "small"
  return config
