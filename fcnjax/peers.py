"""Multi-host start-up and a watchdog for peers that vanish.

`initialize` joins the JAX distributed runtime and starts a daemon thread in
every process: each process writes a heartbeat counter into the runtime's
key-value store twice a second and reads those of the others. A peer whose
counter has not moved for `timeout` seconds, or a coordinator that can no
longer be reached, stops this process at once with one line naming the
process that vanished (exit status 1), instead of a hang in a collective or
JAX's raw abort; JAX's own heartbeat timeout is set above ours. A process
that ends normally marks itself done (its peers no longer watch it); one that
ends with an uncaught error marks itself failed, which its peers report
after `timeout` seconds unless they end first.
"""
import atexit
import os
import sys
import threading
import time

PREFIX = "fcnjax_alive/"
EXIT_STATUS = 1


def _say_and_exit(message):
  """Writes one line to stderr and ends the process without clean-up: the
  main thread may be blocked in a collective that can never complete."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # a closed stream: nothing to keep
      pass
  os.write(2, f"\nfcnjax: {message}\n".encode())
  os._exit(EXIT_STATUS)


def vanished_message(process, me, count, reason):
  return (f"process {process} of {count} vanished ({reason}); process {me} stops here. "
          f"See process {process}'s log for why it ended, then restart all processes "
          "(a training resumes from its newest checkpoint).")


def stale_peers(last_change, now, timeout, done):
  """The peers, not done, whose heartbeat has not moved for over `timeout` s."""
  return sorted(p for p, t in last_change.items() if p not in done and now - t > timeout)


def _first_line(error):
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def watch(client, me, count, timeout, stop, interval=0.5):
  """The watchdog loop: runs until `stop` is set or a peer vanishes."""
  last_value, done, beat = {}, set(), 0
  last_change = {p: time.monotonic() for p in range(count) if p != me}
  while not stop.wait(interval):
    beat += 1
    try:
      client.key_value_set(f"{PREFIX}{me}", str(beat), allow_overwrite=True)
      values = dict(client.key_value_dir_get(PREFIX))
    except Exception as e:  # the key-value store lives in process 0
      if not stop.is_set():
        _say_and_exit(vanished_message(0, me, count, "its coordinator service cannot be "
                                       f"reached: {_first_line(e)}"))
      return
    now = time.monotonic()
    for key, value in values.items():
      p = int(key.rsplit("/", 1)[1])
      if value == "done":
        done.add(p)
      elif p != me and value != last_value.get(p):
        last_value[p], last_change[p] = value, now
    stale = stale_peers(last_change, now, timeout, done)
    if stale and not stop.is_set():
      reason = ("it ended with an error" if last_value.get(stale[0]) == "failed"
                else f"no heartbeat for {timeout} s")
      _say_and_exit(vanished_message(stale[0], me, count, reason))


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               peer_timeout=60):
  """jax.distributed.initialize + the peer watchdog (see the module doc)."""
  import jax
  from jax._src import distributed
  if peer_timeout < 1:
    raise ValueError(f"--peer_timeout={peer_timeout}: must be at least 1 second")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=2 * peer_timeout + 10)
  client = distributed.global_state.client
  me, count = jax.process_index(), jax.process_count()
  stop = threading.Event()
  threading.Thread(target=watch, args=(client, me, count, peer_timeout, stop),
                   name="fcnjax-peer-watchdog", daemon=True).start()

  def finish():  # atexit: runs before JAX's own shutdown (registered earlier)
    stop.set()
    failed = getattr(sys, "last_value", None) is not None  # an uncaught error
    try:
      client.key_value_set(f"{PREFIX}{me}", "failed" if failed else "done",
                           allow_overwrite=True)
    except Exception:  # the coordinator is already gone
      pass

  atexit.register(finish)
