"""FCN-8s (VGG16, same geometry) on Cityscapes fine annotations from the raw folders.

    python -m fcnjax.commands.convert --torch_weights=vgg16-397923af.pth --out=vgg16.npz
    fcnjax-train --config=fcn8s_cityscapes_folder --workdir=runs/fcn8s_cityscapes \
        --config.data.root=/data/cityscapes
    fcnjax-train --config=fcn8s_cityscapes_folder:80k --workdir=runs/fcn8s_cityscapes_80k \
        --config.data.root=/data/cityscapes

The folder dataset (fcnjax/data/folder.py) on leftImg8bit_trainvaltest.zip
and gtFine_trainvaltest.zip unpacked into one root:
leftImg8bit/<split>/<city>/*_leftImg8bit.png paired with
gtFine/<split>/<city>/*_gtFine_labelIds.png, the 34 label ids mapped to the
19 train ids (fcnjax/data/cityscapes.py), every other id ignored; no tfds
and no TensorFlow (`fcn8s_cityscapes` reads the same data through tfds).
The settings of mmsegmentation's FCN Cityscapes configs
(fcn_r50-d8_4xb2-{40k,80k}_cityscapes-512x1024): 512x1024 crops of the
2048x1024 images rescaled by 0.5-2.0 with flips, batch 8, SGD lr 0.01,
momentum 0.9, weight decay 5e-4, poly (power 0.9) decay over 40k or 80k
iterations (the argument after ':'), evaluated and checkpointed every 4k /
8k iterations on the whole 2048x1024 validation images. Differences: the
lecture's VGG16 FCN-8s from the converted ImageNet weights (config.init_from,
a local .npz) instead of a dilated ResNet-50; no photometric distortion or
class-ratio-limited crops; a 500-step warmup (VGG16 has no BatchNorm) and
poly decay to 0 rather than 1e-4. `fcnjax-evaluate --tile=0` scores the
validation images tile by tile in bounded memory, with the same labels.
"""
from fcnjax.configs import mmseg_fcn8s_config
from fcnjax.data import cityscapes

SCHEDULES = {"40k": 40_000, "80k": 80_000}


def get_config(schedule="40k"):
  if schedule not in SCHEDULES:
    raise ValueError(f"--config=fcn8s_cityscapes_folder:{schedule}; valid: "
                     f"{sorted(SCHEDULES)}")
  steps = SCHEDULES[schedule]
  config = mmseg_fcn8s_config(steps, batch_size=8)
  config.data.update(dict(
      name="folder", image_dir="leftImg8bit", mask_dir="gtFine",
      image_suffix="_leftImg8bit.png", mask_suffix="_gtFine_labelIds.png",
      class_names=cityscapes.CLASS_NAMES,
      label_map=tuple(sorted(cityscapes.ID_TO_TRAIN_ID.items())),
      train_split="train", eval_split="val", crop_size=512, crop_width=1024,
      scale_range=(0.5, 2.0)))
  return config
