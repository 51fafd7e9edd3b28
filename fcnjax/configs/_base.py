"""Default configuration; packaged and experiment configs import it (from
`fcnjax.configs`) and override a few fields."""
import ml_collections
from ml_collections import config_dict

from fcnjax import models
from fcnjax.data import pipeline


def default_config() -> ml_collections.ConfigDict:
  """FCN-8s with the small BN VGG backbone on the embedded shapes dataset.

  Adam + cosine schedule, 96x96 random crops (scale 0.75-1.25, flips) of the
  128x128 images, evaluation at full size: about 8 minutes on 2 CPU cores.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = pipeline.default_data_config()
  config.data.crop_size = 96
  config.num_classes = config_dict.placeholder(int)  # unset: the dataset's; else must agree

  # models.MODEL_DEFAULTS; upsample None: the family's operator (fcn: learned, segnet,
  # deconvnet, decoder: max_unpool, unet: bilinear); upsample_options: the operator's
  # options (models/operator.py), set in a config file; depth (encoder-decoders): the
  # backbone stages used (None: all); skips (decoder): the encoder's map concatenated
  # after each x2 stage.
  config.model = ml_collections.ConfigDict(dict(
      models.MODEL_DEFAULTS, upsample=config_dict.placeholder(str),
      upsample_options=ml_collections.ConfigDict(), depth=config_dict.placeholder(int)))
  config.dtype = "float32"  # or "bfloat16" (compute; params stay float32)

  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=3e-3, schedule="cosine", warmup_steps=50,
      momentum=0.9, nesterov=False, weight_decay=0.0, grad_clip=0.0, step_every=0))
  # name: a term of train/losses.LOSSES (ce, focal, dice, lovasz) or a weighted sum
  # such as "ce+0.5*dice"; reduction and class weighting apply to the ce and focal terms.
  config.loss = ml_collections.ConfigDict(dict(name="ce", focal_gamma=2.0))
  config.loss_reduction = "mean"  # "sum": the reference FCN's summed loss
  config.class_weighting = "none"  # or "median_frequency" (SegNet's class balancing)

  config.batch_size = 16  # global, over all devices and hosts
  config.eval_batch_size = 16
  config.num_train_steps = 1500
  config.parallel = "jit"  # jit + shard_map over a Mesh; or "pmap"
  config.num_devices = 0  # 0: all devices

  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.boundary_width = 2
  config.init_from = ""  # a workdir (previous stage) or a .npz of params
  # Signals that stop a training at the next step with a checkpoint of it (exit status
  # 75; README "Stopping and resuming"); "" keeps their default actions.
  config.stop_signals = "SIGTERM,SIGINT,SIGUSR1"
  config.checkpoint_timeout_s = 60  # a save not committed by then stops the run
  config.change_schedule = False  # True: a resume may change num_train_steps / the schedule
  return config


def study_config(num_train_steps) -> ml_collections.ConfigDict:
  """The studies' shared settings (the protocol: `fcnjax.studies.study`).

  shapes/study: 64x64 images, train 2000 / validation 300 (the selection
  split: curves and budget) / test 1000 (scored once per run). Trained on the
  whole 64x64 images (flips only, no rescaling) and scored at that size, so
  BatchNorm statistics and receptive fields are used at the size they were
  learned. Batch 16, Adam + cosine; the selection split is evaluated ten
  times per run; one checkpoint kept (the final weights).
  """
  config = default_config()
  config.data.tfds_config = "study"
  config.data.crop_size = 64
  config.data.scale_range = (1.0, 1.0)
  config.num_train_steps = num_train_steps
  config.log_every_steps = 50
  config.eval_every_steps = max(1, num_train_steps // 10)
  config.checkpoint_every_steps = num_train_steps
  config.keep_checkpoints = 1
  return config


def paper_voc_config(variant: str) -> ml_collections.ConfigDict:
  """The reference FCN training on PASCAL VOC 2012 + SBD with VGG16.

  Batch 1 at native size, summed (unnormalised) loss, SGD momentum 0.99, fixed
  lr (1e-10 / 1e-12 / 1e-14 for 32s / 16s / 8s), weight decay 5e-4, Caffe
  geometry (conv1_1 padding 100, crops), Caffe BGR mean, zero-initialised
  score layers, dropout 0.5, fixed bilinear upscore. Stages are initialised
  from a converted ImageNet VGG16 (32s) or from the previous stage.
  """
  config = default_config()
  config.data.name = "voc"
  config.data.eval_split = "seg11valid"
  config.data.crop_size = 500  # reference images are at most 500x500
  config.data.scale_range = (1.0, 1.0)
  config.data.flip = False
  config.data.normalization = "caffe"
  config.model.update(dict(variant=variant, backbone="vgg16", upsample="bilinear",
                           geometry="paper", zero_init_score=True, dropout_rate=0.5))
  config.optimizer.update(dict(
      name="sgd", schedule="constant", warmup_steps=0, momentum=0.99, weight_decay=5e-4,
      learning_rate={"32s": 1e-10, "16s": 1e-12, "8s": 1e-14}[variant]))
  config.loss_reduction = "sum"
  config.batch_size = 1
  config.eval_batch_size = 1
  config.num_devices = 1
  config.num_train_steps = 100_000
  config.log_every_steps = 20
  config.eval_every_steps = 4000
  config.checkpoint_every_steps = 4000
  config.init_from = {"32s": "vgg16.npz", "16s": "runs/fcn32s_voc",
                      "8s": "runs/fcn16s_voc"}[variant]
  return config


def mmseg_fcn8s_config(steps, batch_size) -> ml_collections.ConfigDict:
  """FCN-8s on VGG16 with the schedule of mmsegmentation's FCN configs: SGD lr
  0.01, momentum 0.9, weight decay 5e-4, poly decay (after a 500-step warmup:
  VGG16 has no BatchNorm), evaluation and checkpoints every tenth of the run,
  the ImageNet backbone from a local vgg16.npz (`fcnjax-convert`). The data
  block is the caller's (fcn8s_ade20k, fcn8s_cityscapes_folder)."""
  config = default_config()
  config.model.update(dict(variant="8s", backbone="vgg16", dropout_rate=0.5))
  config.optimizer.update(dict(name="sgd", learning_rate=0.01, momentum=0.9,
                               weight_decay=5e-4, schedule="poly", warmup_steps=500))
  config.batch_size = batch_size
  config.eval_batch_size = 8
  config.num_train_steps = steps
  config.eval_every_steps = steps // 10
  config.checkpoint_every_steps = steps // 10
  config.init_from = "vgg16.npz"
  return config
