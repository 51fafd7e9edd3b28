"""Flags and start-up shared by the entry points (main, evaluate, predict, bench, ...)."""
import ctypes
import functools
import importlib.util
import os
import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from fcnjax.runtime import errors, logs, peers
from fcnjax.train import preemption, validate

FLAGS = flags.FLAGS


def define_flags(checkpoint_choice=False):
  """The flags every entry point takes (+ --checkpoint for evaluate / predict)."""
  config_flags.DEFINE_config_file(
      "config", None, "A packaged config name (fcn8s_shapes, ...) or a config file; override "
      "fields with --config.optimizer.learning_rate=1e-4.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs.")
  flags.DEFINE_string("coordinator_address", None,
                      "Multi-host: host:port of process 0 (jax.distributed.initialize).")
  flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
  flags.DEFINE_integer("process_id", None, "Multi-host: this process's id.")
  flags.DEFINE_integer("peer_timeout", 60, "Multi-host: seconds without a heartbeat "
                       "after which a process stops, naming the peer that vanished.")
  flags.DEFINE_bool("distributed", False, "Multi-host with JAX's own cluster detection "
                    "(SLURM, Kubernetes, TPU pods): jax.distributed.initialize().")
  flags.DEFINE_string("compilation_cache_dir", default_compilation_cache_dir(),
                      "JAX's persistent compilation cache (later runs of the same model skip "
                      "compilation); empty turns it off. Default: $FCNJAX_COMPILATION_CACHE "
                      "or ~/.cache/fcnjax/jax.")
  if checkpoint_choice:
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.")
  flags.mark_flags_as_required(["config", "workdir"])


def define_study_flags(default_config, default_workdir, seeds=5):
  """The flags of a study script: --config (+ overrides), --workdir, --seeds."""
  config_flags.DEFINE_config_file("config", default_config, "Base config of every run.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", default_workdir, "Where the runs and results go.")
  flags.DEFINE_list("seeds", [str(s) for s in range(seeds)], "Seeds of every arm (paired).")


def define_tta_flags(what):
  """--tta_scales / --tta_flip (`step.check_tta`); `what`: what the passes' average is
  used for, in the help."""
  flags.DEFINE_list("tta_scales", [], "Test-time augmentation: " + what + " the average of "
                    "the softmax over these image scales (e.g. 0.75,1,1.25; each > 0), "
                    "within each tile when tiled.")
  flags.DEFINE_bool("tta_flip", False, "Test-time augmentation: add each scale's left-right "
                    "mirrored pass (alone: scale 1 and its mirror).")


def default_compilation_cache_dir():
  return os.environ.get("FCNJAX_COMPILATION_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "fcnjax", "jax"))


def enable_compilation_cache(directory):
  """Compiled programs are stored in and read from `directory` ('' or None: off)."""
  if directory:
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def packaged_configs():
  return sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f[0] != "_")


def resolve_config(argv):
  """argv with --config=<name> (a packaged config, e.g. fcn8s_shapes) replaced by
  its file path; paths pass unchanged. ValueError listing the names for an unknown one."""
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      name, sep, rest = arg[len("--config="):].partition(":")
      if name and "/" not in name and not name.endswith(".py"):
        if name not in packaged_configs():
          raise ValueError(f"--config={name}: no such file or packaged config; "
                           f"packaged: {', '.join(packaged_configs())}")
        arg = f"--config={os.path.join(CONFIG_DIR, name + '.py')}{sep}{rest}"
    out.append(arg)
  return out


# XLA:CPU options the project relies on: convolutions run on XLA's own (Eigen)
# kernels rather than YNNPACK, whose backward passes are slower on VGG's layers
# (docs/benchmarks.md). A CPU-only flag: other backends ignore it.
XLA_CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def configure_xla(environ=None):
  """Appends XLA_CPU_FLAGS to environ['XLA_FLAGS'] (default os.environ), keeping
  what is there; a flag the user already set wins. Takes effect only if called
  before JAX initialises its backends (the entry points call it first)."""
  environ = os.environ if environ is None else environ
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms and "cpu" not in platforms.split(","):
    return  # no CPU backend in this run
  current = environ.get("XLA_FLAGS", "")
  new = [f for f in XLA_CPU_FLAGS if f.split("=")[0] not in current]
  if new:
    environ["XLA_FLAGS"] = " ".join([current] + new if current else new)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def _cpu_run(environ):
  """Whether JAX will run on its CPU backend: JAX_PLATFORMS starts with cpu,
  or it is unset and no accelerator plugin (CUDA / ROCm / TPU) is installed."""
  platforms = environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0] == "cpu"
  return all(importlib.util.find_spec(m) is None for m in ("jax_plugins", "libtpu"))


def configure_allocator(environ=None):
  """Makes glibc malloc keep freed memory for reuse: one arena, no mmap for
  large blocks, no trimming (threshold -1: the largest size_t). XLA:CPU
  allocates each step's temporary buffer afresh (about 1 GB for FCN-8s VGG16
  at 224x224, batch 2); by default glibc maps it anew and unmaps it at every
  step, so the step page-faults on all of it (~263,000 faults, ~0.5 s of CPU per step here).
  The price: the process keeps its peak memory. Applied on glibc for a CPU
  run (`_cpu_run`); environ['FCNJAX_MALLOC'] (default os.environ) 'system'
  turns it off, 'tuned' on. Call before JAX starts its threads. Returns
  whether it was applied."""
  environ = os.environ if environ is None else environ
  choice = environ.get("FCNJAX_MALLOC", "")
  if choice == "system" or (choice != "tuned" and not _cpu_run(environ)):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # not glibc (macOS, musl)
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
  global allocator_tuned
  allocator_tuned = all(mallopt(param, value) == 1 for param, value in settings)
  return allocator_tuned


allocator_tuned = False  # whether configure_allocator applied in this process


def run(main, module):
  """`app.run(main)` where --help shows `module`'s docstring and its flags,
  also when started through a console script; --config may name a packaged config.
  Sets the project's XLA flags and allocator first (configure_xla,
  configure_allocator)."""
  configure_xla()
  configure_allocator()
  from absl import app
  try:
    sys.argv = resolve_config(sys.argv)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  sys.modules["__main__"].__doc__ = sys.modules[module].__doc__
  if "traceback" not in FLAGS:
    flags.DEFINE_bool("traceback", False, "Show the traceback of a known error (a missing "
                      "file, a bad field, ...) instead of its one 'error: ...' line; -v 1 too.")
  by_module = FLAGS.flags_by_module_dict()
  for name in (module, __name__, config_flags.__name__, config_flags.config_flags.__name__):
    for flag in by_module.get(name, []):
      FLAGS.register_flag_by_module(sys.argv[0], flag)
  show_frames = lambda: FLAGS.traceback or logging.get_verbosity() >= 1
  app.run(functools.partial(errors.as_messages,
                            functools.partial(_config_errors_as_messages, main),
                            show_frames=show_frames))


def _config_errors_as_messages(main, argv):
  """A bad config field ends the run with its one-line message, not a traceback."""
  try:
    return main(argv)
  except validate.ConfigError as e:
    raise SystemExit(f"error: {e}") from None
  except preemption.Stopped as e:  # a stop signal; the checkpoint of e.step is saved
    print(f"fcnjax: {e}", flush=True)
    raise SystemExit(preemption.EXIT_STATUS) from None


def start():
  """Quiets library logs, turns on the compilation cache and joins the
  multi-host runtime (TensorFlow, when a dataset needs it, is kept off
  accelerators where it is imported: `data.tfds_source`)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logs.quiet_libraries()  # library INFO logs hidden unless -v 1
  flag = lambda name, default=None: FLAGS[name].value if name in FLAGS else default
  # A script without the flag (fcnjax-study, the experiments) uses the default cache.
  enable_compilation_cache(flag("compilation_cache_dir", default_compilation_cache_dir()))
  explicit = flag("coordinator_address") or flag("num_processes")
  if explicit or flag("distributed", False):  # undefined in scripts without these flags
    peers.initialize(coordinator_address=flag("coordinator_address"),
                     num_processes=flag("num_processes"), process_id=flag("process_id"),
                     peer_timeout=flag("peer_timeout", 60))
  logging.info("JAX process %d / %d, %d local / %d global devices (%s)",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
