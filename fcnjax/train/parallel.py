"""Two drivers for the same step bodies: `jax.pmap`, and `jax.jit` over a Mesh.

A driver places the train state and batches on devices and compiles
`train_step` / `eval_step` once, donating the state.

* `PmapDriver`: state replicated over the local devices (leading device axis),
  batches reshaped to (devices, per_device, ...). Collectives span all hosts.
* `JitDriver`: a 1-D `Mesh` over all (global) devices with axis 'batch'; the
  state is replicated (`P()`), batches are sharded along 'batch' (`P('batch')`)
  and the step bodies run under `shard_map`.

Host-side batches are this process's slice of the global batch (numpy, with
the batch first); `to_host` returns the state as one copy on the host.
"""
import functools

import jax
import numpy as np
from flax import jax_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fcnjax.train import step as step_lib

AXIS = "batch"  # the one named axis of every collective in step.py
DRIVERS = ("pmap", "jit")


class PmapDriver:
  """Classic data parallelism with `jax.pmap(axis_name='batch')`."""

  def __init__(self, loss_fn, num_classes, boundary_width=2, devices=None):
    # pmap's default device set spans all hosts; an explicit one (a subset of
    # this process's devices) would make the collectives host-local.
    self.devices = devices or jax.local_devices()
    pmap = functools.partial(jax.pmap, axis_name=AXIS, devices=devices)
    self.train_step = pmap(
        functools.partial(step_lib.train_step, axis_name=AXIS, loss_fn=loss_fn),
        in_axes=(0, 0, None), donate_argnums=(0,))
    self.eval_step = pmap(functools.partial(
        step_lib.eval_step, axis_name=AXIS, num_classes=num_classes,
        boundary_width=boundary_width))

  @property
  def num_devices(self):
    return len(self.devices)

  def put_state(self, state):
    return jax_utils.replicate(state, self.devices)

  def put_batch(self, batch):
    n = len(self.devices)
    def shard(x):
      if x.shape[0] % n:
        raise ValueError(f"per-process batch {x.shape[0]} not divisible by {n} devices")
      return x.reshape((n, x.shape[0] // n) + x.shape[1:])
    return jax.tree.map(shard, batch)

  def train(self, state, batch, rng):
    state, metrics = self.train_step(state, self.put_batch(batch), rng)
    return state, jax.tree.map(lambda m: m[0], metrics)

  def evaluate(self, state, batch):
    return jax.tree.map(lambda m: m[0], self.eval_step(state, self.put_batch(batch)))

  def to_host(self, state):
    return jax.device_get(jax.tree.map(lambda x: x[0], state))


class JitDriver:
  """`jax.jit` of `shard_map` over a 1-D mesh of all devices (multi-host too)."""

  def __init__(self, loss_fn, num_classes, boundary_width=2, devices=None):
    self.devices = devices or jax.devices()
    self.mesh = jax.sharding.Mesh(np.array(self.devices), (AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    smap = functools.partial(jax.shard_map, mesh=self.mesh)
    train = functools.partial(step_lib.train_step, axis_name=AXIS, loss_fn=loss_fn)
    self.train_step = jax.jit(
        smap(train, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P())), donate_argnums=(0,))
    evaluate = functools.partial(step_lib.eval_step, axis_name=AXIS, num_classes=num_classes,
                                 boundary_width=boundary_width)
    self.eval_step = jax.jit(smap(evaluate, in_specs=(P(), P(AXIS)), out_specs=P()))

  @property
  def num_devices(self):
    return len(self.devices)

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def put_batch(self, batch):
    def put(x):
      if x.shape[0] % jax.local_device_count():
        raise ValueError(f"per-process batch {x.shape[0]} not divisible by "
                         f"{jax.local_device_count()} local devices")
      return jax.make_array_from_process_local_data(self.sharded, x)
    return jax.tree.map(put, batch)

  def train(self, state, batch, rng):
    return self.train_step(state, self.put_batch(batch), rng)

  def evaluate(self, state, batch):
    return self.eval_step(state, self.put_batch(batch))

  def to_host(self, state):
    return jax.device_get(state)


def make_driver(name, *, loss_fn, num_classes, boundary_width=2, num_devices=None):
  """name in DRIVERS; loss_fn the training loss (`losses.make_loss`);
  num_devices limits a single-process run to the first N."""
  if name not in DRIVERS:
    raise ValueError(f"config.parallel={name!r}; valid: {DRIVERS}")
  devices = None
  if num_devices:
    if jax.process_count() > 1:
      raise ValueError("config.num_devices must be unset in a multi-host run")
    if num_devices > jax.local_device_count():
      raise ValueError(f"config.num_devices={num_devices} but only "
                       f"{jax.local_device_count()} devices are available")
    devices = jax.local_devices()[:num_devices]
  cls = PmapDriver if name == "pmap" else JitDriver
  return cls(loss_fn, num_classes, boundary_width, devices)
