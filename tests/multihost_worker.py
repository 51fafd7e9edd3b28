"""One process of the 2-process test: joins the runtime on 127.0.0.1, trains
a few steps with the given driver, process 0 saves the final params."""
import os
import sys

os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=4"
                           " --xla_backend_optimization_level=0")
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main(port, process_id, driver_name, out_path):
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=process_id)
  sys.path.insert(0, os.path.dirname(__file__))
  import test_parallel as tp
  import optax
  from fcnjax.train import losses as loss_lib
  from fcnjax.train import parallel
  assert jax.process_count() == 2 and jax.device_count() == 8
  driver = parallel.make_driver(driver_name, loss_fn=loss_lib.make_loss("ce"),
                                num_classes=tp.NUM_CLASSES)
  state = driver.put_state(tp._initial_state(optax.sgd(0.5)))
  losses = []
  for batch in tp._batches():
    # This process's slice of the global batch of 8.
    local = {k: v[4 * process_id:4 * (process_id + 1)] for k, v in batch.items()}
    state, metrics = driver.train(state, local, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  params = driver.to_host(state).params
  if process_id == 0:
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    np.savez(out_path, losses=np.array(losses), **flat)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
