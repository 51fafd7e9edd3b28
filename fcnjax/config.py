"""Default configuration; experiment configs import it and override a few fields."""
import ml_collections

from fcnjax.data import pipeline


def default_config() -> ml_collections.ConfigDict:
  """Tiny FCN-8s on the embedded shapes dataset, Adam + cosine schedule."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = pipeline.default_data_config()
  config.num_classes = None  # None: taken from the dataset; else must agree with it

  config.model = ml_collections.ConfigDict(dict(
      name="fcn", variant="8s", backbone="tiny", upsample="learned", geometry="same",
      zero_init_score=True, dropout_rate=0.0))
  config.dtype = "float32"  # or "bfloat16" (compute; params stay float32)

  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=50,
      momentum=0.9, nesterov=False, weight_decay=0.0, grad_clip=0.0, step_every=0))
  config.loss_reduction = "mean"  # "sum": the reference FCN's summed loss

  config.batch_size = 16  # global, over all devices and hosts
  config.eval_batch_size = 16
  config.num_train_steps = 1000
  config.parallel = "pmap"  # or "jit" (jit + shard_map over a Mesh)
  config.num_devices = 0  # 0: all devices

  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.boundary_width = 2
  config.init_from = ""  # a workdir (previous stage) or a .npz of params
  return config
