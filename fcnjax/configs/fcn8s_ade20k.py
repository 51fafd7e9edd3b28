"""FCN-8s (VGG16, same geometry) on ADE20K (SceneParsing, 150 classes) from its folder.

    python -m fcnjax.commands.convert --torch_weights=vgg16-397923af.pth --out=vgg16.npz
    fcnjax-train --config=fcn8s_ade20k --workdir=runs/fcn8s_ade20k \
        --config.data.root=/data/ADEChallengeData2016
    fcnjax-train --config=fcn8s_ade20k:160k --workdir=runs/fcn8s_ade20k_160k \
        --config.data.root=/data/ADEChallengeData2016

The folder dataset (fcnjax/data/folder.py) on the release's layout:
images/{training,validation}/*.jpg and annotations/{training,validation}/*.png,
stored value 0 ("other") ignored and 1..150 becoming labels 0..149
(reduce_zero_label). The settings of mmsegmentation's FCN ADE20K configs
(fcn_r50-d8_4xb4-{80k,160k}_ade20k-512x512): 512x512 crops of images
rescaled by 0.5-2.0 with flips, batch 16, SGD lr 0.01, momentum 0.9, weight
decay 5e-4, poly (power 0.9) decay over 80k or 160k iterations (the argument
after ':'), evaluated and checkpointed every 8k / 16k iterations on the whole
validation images at their own size. Differences: the lecture's VGG16
FCN-8s from the converted ImageNet weights (config.init_from, a local .npz)
instead of a dilated ResNet-50; the rescaling is relative to each image's
own size (mmsegmentation first fits it to 2048x512); no photometric
distortion or class-ratio-limited crops; a 500-step warmup (VGG16 has no
BatchNorm) and poly decay to 0 rather than 1e-4. Large validation images:
`fcnjax-evaluate --tile=0` scores them tile by tile in bounded memory.
"""
from fcnjax.configs import mmseg_fcn8s_config

# mmsegmentation's ADE20KDataset names, in label order (stored value - 1).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
SCHEDULES = {"80k": 80_000, "160k": 160_000}


def get_config(schedule="80k"):
  if schedule not in SCHEDULES:
    raise ValueError(f"--config=fcn8s_ade20k:{schedule}; valid: {sorted(SCHEDULES)}")
  steps = SCHEDULES[schedule]
  config = mmseg_fcn8s_config(steps, batch_size=16)
  config.data.update(dict(
      name="folder", image_dir="images", mask_dir="annotations", image_suffix=".jpg",
      mask_suffix=".png", class_names=ADE20K_CLASSES, reduce_zero_label=True,
      train_split="training", eval_split="validation", crop_size=512,
      scale_range=(0.5, 2.0), eval_bucket=32))
  return config
