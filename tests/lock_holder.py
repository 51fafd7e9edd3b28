"""Processes that take a workdir's lock (`fcnjax.train.lock.acquire_lock`)
together, each reporting 'held' or 'refused: <message>', and keep it until
their stdin closes or they are killed."""
import contextlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = """
import sys
from fcnjax.train import lock
print("ready", flush=True)
sys.stdin.readline()
try:
  lock.acquire_lock(sys.argv[1])
  print("held", flush=True)
except RuntimeError as e:
  print(f"refused: {e}", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holders(workdir, n=1):
  """n processes that try to take the lock of `workdir` at the same moment
  (each started and waiting first): yields [(process, its report)]; the
  processes are killed at the end of the block."""
  procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
           for _ in range(n)]
  try:
    for p in procs:
      assert p.stdout.readline().strip() == "ready"
    for p in procs:
      p.stdin.write("go\n")
      p.stdin.flush()
    yield [(p, p.stdout.readline().strip()) for p in procs]
  finally:
    for p in procs:
      p.kill()
      p.wait()


@contextlib.contextmanager
def holding(workdir):
  """One process that holds the lock of `workdir` for the block: yields it."""
  with holders(workdir) as [(process, report)]:
    assert report == "held", report
    yield process
