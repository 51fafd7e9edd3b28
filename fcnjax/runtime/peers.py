"""Multi-host start-up and a watchdog for peers that vanish.

`initialize` joins the JAX distributed runtime and starts a daemon thread in
every process: each process writes a heartbeat counter into the runtime's
key-value store twice a second and reads those of the others. A peer whose
counter has not moved for `timeout` seconds, or a coordinator that can no
longer be reached, stops this process at once with one line naming the
process that vanished (exit status 1), instead of a hang in a collective or
JAX's raw abort; JAX's own heartbeat timeout is set above ours. The one case
it cannot speak for: when process 0 (which holds the coordination service)
dies, JAX's client in each survivor aborts at once with its own message
naming the leader task (its error callback is not usable from Python).

At exit a process marks itself done (its peers stop watching it) or, after
an uncaught error, failed: its peers report that `timeout` seconds later
unless they end first. A failed process skips JAX's shutdown barrier, which
would wait for peers stuck in a collective: process 1.. exit at once, process
0 (whose service the peers read) once its peers have ended or `timeout` + 2 s.
The watchdog keeps watching while its process exits: a process that ends
normally runs JAX's distributed shutdown (its barrier) under the watchdog,
then stops the thread and waits for it, so that no daemon thread is inside
the runtime's C++ client when the interpreter finalises (which aborts).
"""
import atexit
import os
import sys
import threading
import time

from fcnjax.runtime import jax_private

PREFIX = "fcnjax_alive/"
EXIT_STATUS = 1


def _flush():
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # a closed stream: nothing to keep
      pass


def _say_and_exit(message):
  """Writes one line to stderr and ends the process without clean-up: the
  main thread may be blocked in a collective that can never complete."""
  _flush()
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


def watch(client, me, count, timeout, exiting, lock, stop, interval=0.5):
  """The watchdog loop (a daemon thread). Beats until `exiting` is set and
  reports the first peer that vanishes, also while this process exits; ends
  when `stop` is set."""
  last_value, done, beat = {}, set(), 0
  last_change = {p: time.monotonic() for p in range(count) if p != me}
  while not stop.wait(interval):
    beat += 1
    try:
      with lock:  # never after `finish` wrote this process's final state
        if not exiting.is_set():
          client.key_value_set(f"{PREFIX}{me}", str(beat), allow_overwrite=True)
      values = dict(client.key_value_dir_get(PREFIX))
    except Exception as e:  # the key-value store lives in process 0
      if exiting.is_set():
        return  # process 0 ends its service once every process has shut down
      _say_and_exit(vanished_message(0, me, count, "its coordinator service cannot be "
                                     f"reached: {_first_line(e)}"))
    now = time.monotonic()
    for key, value in values.items():
      p = int(key.rsplit("/", 1)[1])
      if value == "done":
        done.add(p)
      elif p != me and value != last_value.get(p):
        last_value[p], last_change[p] = value, now
    stale = stale_peers(last_change, now, timeout, done)
    if stale:
      reason = ("it ended with an error" if last_value.get(stale[0]) == "failed"
                else f"no heartbeat for {timeout} s")
      _say_and_exit(vanished_message(stale[0], me, count, reason))


def _leave_failed(client, me, count, timeout):
  """Exit status 1 without JAX's shutdown barrier; process 0 first waits for
  its peers to end (done / failed) or for `timeout` + 2 s."""
  deadline = time.monotonic() + timeout + 2
  while me == 0 and time.monotonic() < deadline:
    try:
      values = dict(client.key_value_dir_get(PREFIX))
    except Exception:  # cannot tell: stop waiting
      break
    if all(values.get(f"{PREFIX}{p}") in ("done", "failed") for p in range(1, count)):
      break
    time.sleep(0.5)
  _flush()
  os._exit(EXIT_STATUS)


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               peer_timeout=60, heartbeat_interval=0.5):
  """jax.distributed.initialize + the peer watchdog (see the module doc),
  which beats every `heartbeat_interval` seconds."""
  import jax
  if peer_timeout < 1:
    raise ValueError(f"--peer_timeout={peer_timeout}: must be at least 1 second")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=2 * peer_timeout + 10)
  client = jax_private.client()
  me, count = jax.process_index(), jax.process_count()
  exiting, stop, lock = threading.Event(), threading.Event(), threading.Lock()
  watchdog = threading.Thread(
      target=watch,
      args=(client, me, count, peer_timeout, exiting, lock, stop, heartbeat_interval),
      name="fcnjax-peer-watchdog", daemon=True)
  watchdog.start()

  def finish():  # atexit: runs before JAX's own shutdown (registered earlier)
    failed = getattr(sys, "last_value", None) is not None  # an uncaught error
    with lock:
      exiting.set()
      try:
        client.key_value_set(f"{PREFIX}{me}", "failed" if failed else "done",
                             allow_overwrite=True)
      except Exception:  # the coordinator is already gone
        pass
    if failed:
      _leave_failed(client, me, count, peer_timeout)
    jax.distributed.shutdown()  # JAX's own exit hook then has nothing left to do
    stop.set()
    watchdog.join(timeout=peer_timeout)

  atexit.register(finish)
