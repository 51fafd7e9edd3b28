"""The train state: params, optimiser state and BatchNorm statistics."""
from typing import Any

import jax
import jax.numpy as jnp
from flax.training import train_state


class TrainState(train_state.TrainState):
  """flax TrainState plus BatchNorm statistics (an empty dict if none)."""
  batch_stats: Any = None


def create_train_state(model, optimizer, rng, input_shape):
  """Initialises the model on zeros of input_shape (N, H, W, 3) -> TrainState."""
  variables = jax.jit(lambda r: model.init({"params": r, "dropout": r},
                                           jnp.zeros(input_shape, jnp.float32),
                                           train=False))(rng)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           tx=optimizer, batch_stats=variables.get("batch_stats", {}))
