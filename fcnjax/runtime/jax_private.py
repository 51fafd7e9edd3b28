"""The private JAX state fcnjax needs for multi-process runs, in one place.

jax 0.10 offers no public handle on the coordination service's client (the
key-value store through which a process tells its peers which signal stopped
it and that it is still alive: `runtime.peers`, `train.preemption`) nor on the
preemption sync manager (whether JAX's own SIGTERM service is running); both
live in `jax._src.distributed.global_state`. What is public is used where it
exists: `jax.distributed.initialize(heartbeat_timeout_seconds=...)` and
`jax.experimental.multihost_utils.reached_preemption_sync_point`. A public
client (a `jax.distributed` key-value API) would replace `client()`.
"""
import jax
from absl import logging
from jax._src import distributed

CHECKED = ("0.10.",)  # the jax versions this module's attributes were checked against


def _global_state():
  if not jax.__version__.startswith(CHECKED):
    logging.log_first_n(logging.WARNING, "fcnjax.runtime.jax_private was checked against "
                        "jax %s, this is jax %s: multi-process stops and peer watching may "
                        "fail", 1, "/".join(CHECKED), jax.__version__)
  return distributed.global_state


def client():
  """The coordination service's client (None before jax.distributed.initialize)."""
  return _global_state().client


def preemption_sync_manager():
  """JAX's preemption sync manager (None unless its service runs)."""
  return _global_state().preemption_sync_manager
