"""Stopping a training cleanly on a signal (SIGTERM, SIGINT, SIGUSR1).

While a training runs, the signals named in `config.stop_signals` no longer
kill it: the run stops after the step that every process agrees on, saves a
checkpoint of exactly that step, flushes its writer, releases the workdir
lock and raises `Stopped`; the entry points print its one line and exit with
`EXIT_STATUS` (75, EX_TEMPFAIL of sysexits.h: stopped on request, rerun the
same command to resume). A signal that arrives while the run is stopping is
answered with one line and otherwise ignored: the save it would interrupt
finishes (SIGKILL still ends the process at once; orbax commits a step by a
rename, so the previous checkpoints stay intact).

Agreement between processes: a single process stops after the step during
which the signal arrived. In a multi-process run JAX's preemption service
(started by `jax.distributed.initialize`) catches SIGTERM itself and agrees
on the step (`multihost_utils.reached_preemption_sync_point`: the largest
step any process has reached, plus one); SIGINT and SIGUSR1 are handed to it
as a SIGTERM. Without that service (`jax_enable_preemption_service=False`)
the processes all-gather their stop flags after every step.

A signal during the last step, the final evaluation or the final save
cannot end the run early; the run completes and then raises `Stopped`
(`finished=True`) all the same, so that whatever called it (a study about
to start its next run) stops too, with the same exit status.
"""
import os
import signal
import threading

import jax

from fcnjax.runtime import jax_private
from fcnjax.train.validate import ConfigError

EXIT_STATUS = 75
DEFAULT_SIGNALS = "SIGTERM,SIGINT,SIGUSR1"
KEY_PREFIX = "fcnjax_stop/"
JAX_NOTICE_KEY = "RECEIVED_PREEMPTION_NOTICE"  # set by JAX's preemption service


class Stopped(Exception):
  """The run stopped on `signal_name` after saving the checkpoint of `step`."""

  def __init__(self, signal_name, step, directory, finished=False):
    self.signal_name, self.step, self.directory = signal_name, step, directory
    self.finished = finished
    where = os.path.join(directory, str(step))
    if finished:
      text = (f"stopped by {signal_name} after the last step {step}: the run is complete "
              f"(checkpoint {where}); rerun the same command to go on")
    else:
      text = (f"stopped by {signal_name} at step {step}: saved the checkpoint {where}; "
              "rerun the same command to resume")
    super().__init__(text)


def parse_signals(text):
  """'SIGTERM,SIGINT,SIGUSR1' (or TERM, INT, ...; '' for none) -> [signal.Signals]."""
  out = []
  for name in filter(None, (n.strip().upper() for n in (text or "").split(","))):
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP"):
      raise ConfigError(f"config.stop_signals={text!r}: {name} is not one of SIGTERM, "
                       "SIGINT, SIGUSR1, SIGUSR2, SIGHUP")
    out.append(signal.Signals[name])
  return out


def _say(text):
  """One line on stderr; os.write is safe inside a signal handler."""
  os.write(2, f"fcnjax: {text}\n".encode())


def _sync_manager():
  """JAX's preemption sync manager in a multi-process run, else None."""
  if jax.process_count() == 1:
    return None
  return jax_private.preemption_sync_manager()


class StopRequest:
  """Signal handlers for the duration of a training (a context manager).

  `should_stop(step)`, called by every process after every step, says
  whether all processes stop after `step`; `signal_name` names what stopped it.
  """

  def __init__(self, signals):
    self.signals, self.received, self.stopping_at = signals, None, None
    self._previous = {}
    self._jax_sync = _sync_manager() is not None

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # handlers can only be set from the main thread
    for sig in self.signals:
      if self._jax_sync and sig == signal.SIGTERM:
        continue  # JAX's preemption service handles it (its own C++ handler)
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self.stopping_at is not None:
      _say(f"{name} received while saving step {self.stopping_at}: the save finishes "
           "first (SIGKILL would abandon it; the previous checkpoints stay intact)")
      return
    if self.received is not None:
      _say(f"{name} received: already stopping (on {self.received})")
      return
    self.received = name
    _say(f"{name} received: stopping after the current step, with a checkpoint")
    if jax.process_count() > 1:
      self._tell_peers(name)
    if self._jax_sync:
      signal.raise_signal(signal.SIGTERM)  # the notice JAX's service listens for

  def _tell_peers(self, name):
    """Records which signal this process got, for every process's final line."""
    try:
      jax_private.client().key_value_set(
          f"{KEY_PREFIX}{jax.process_index()}", name, allow_overwrite=True)
    except Exception:  # the name is only for the message
      pass

  def should_stop_at_start(self, step):
    """Whether every process stops before its first step, at `step` (a signal
    during start-up). With JAX's service it also registers `step`: a notice
    posted before that would set the sync point to step 1, which a resumed
    run never reaches, so every process checks for one and they agree."""
    if not self._jax_sync:
      return self.should_stop(step)
    import numpy as np
    from jax.experimental import multihost_utils
    reached = multihost_utils.reached_preemption_sync_point(step)
    try:
      jax_private.client().key_value_try_get(JAX_NOTICE_KEY)
      posted = True
    except Exception:  # no such key: no notice yet
      posted = False
    stop = bool(np.any(multihost_utils.process_allgather(np.int32(reached or posted))))
    if stop:
      self.stopping_at = step
    return stop

  def should_stop(self, step):
    """Whether every process stops after `step` (call it after every step)."""
    if jax.process_count() == 1:
      stop = self.received is not None
    elif self._jax_sync:
      from jax.experimental import multihost_utils
      stop = multihost_utils.reached_preemption_sync_point(step)
    else:
      import numpy as np
      from jax.experimental import multihost_utils
      flags = multihost_utils.process_allgather(np.int32(self.received is not None))
      stop = bool(np.any(flags))
    if stop:
      self.stopping_at = step
    return stop

  @property
  def requested(self):
    """Whether a stop was asked for, even one too late to end the run early:
    every process agrees on one seen by the last `should_stop`; a single
    process also counts a signal that came after it (final eval or save)."""
    return self.stopping_at is not None or (jax.process_count() == 1
                                            and self.received is not None)

  @property
  def signal_name(self):
    """This process's signal, or those its peers recorded (SIGTERM if none)."""
    if self.received or jax.process_count() == 1:
      return self.received or "SIGTERM"
    try:
      names = dict(jax_private.client().key_value_dir_get(KEY_PREFIX))
    except Exception:
      names = {}
    if not names:
      return "SIGTERM (a preemption notice)"
    return ", ".join(f"{v} on process {k.rsplit('/', 1)[1]}" for k, v in sorted(names.items()))


def stop_request(config):
  """The StopRequest for `config.stop_signals` (default all three); also
  checks config.checkpoint_timeout_s, the bound on a stopping run's save."""
  timeout = config.get("checkpoint_timeout_s", 60)
  if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 1:
    raise ConfigError(f"config.checkpoint_timeout_s={timeout!r}: must be a number >= 1")
  return StopRequest(parse_signals(config.get("stop_signals", DEFAULT_SIGNALS)))
