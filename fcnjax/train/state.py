"""The train state: params, optimiser state and BatchNorm statistics."""
from typing import Any

import jax
import jax.numpy as jnp
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax TrainState plus BatchNorm statistics (an empty dict if none)."""
  batch_stats: Any = None


def create_train_state(model, optimizer, rng, input_shape):
  """Initialises the model on zeros of input_shape (N, H, W, 3) -> TrainState.
  One jitted program (the model's init and the optimiser's): compiled once,
  where op-by-op optimiser initialisation compiled a program per leaf shape."""
  def create(r):
    variables = model.init({"params": r, "dropout": r}, jnp.zeros(input_shape, jnp.float32),
                           train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             tx=optimizer, batch_stats=variables.get("batch_stats", {}))
  return jax.jit(create)(rng)
