"""Where a training step's time goes: XLA:CPU's own trace of the bench step, by HLO instruction.

    python experiments/profile_step.py --model=decoder --upsample=nearest --backbone=small \
        --size=64 --batch_size=16 --steps=10 [--top=25]

Runs `fcnjax.studies.benchmark.jax_step` (the bench's full training step, jit
driver) `--steps` times under `jax.profiler.trace`, reads the trace back
(`jax.profiler.ProfileData`) and sums the host events per HLO instruction
(convolutions, fusions, copies, ...) over the steps (the union of its events' spans: work split over threads or
traced nested counts its wall once): ms per step each, its
share, and the fusion's kind and the ops it fuses, read from the compiled
program's text. Categories: convolution (XLA's own conv thunks), and each
fusion by what it contains (reduce: BatchNorm statistics, the loss's sums;
otherwise elementwise / layout work). It prints the step's wall time without
the trace beside the traced sum: on one core (`taskset -c 0`) the trace sees
every instruction; with more threads XLA's convolutions run partly on its
thread pool, outside the trace.
"""
import argparse
import collections
import glob
import os
import re
import tempfile
import time

from fcnjax.runtime import cli

cli.configure_xla()

import jax  # noqa: E402

import optax  # noqa: E402

from fcnjax.studies import benchmark  # noqa: E402
from fcnjax.train import losses, parallel  # noqa: E402
from fcnjax.train import state as state_lib  # noqa: E402


def fused_ops(hlo_text):
  """{instruction name: 'kind: op, op, ...'} for each fusion of the program."""
  computations, current = {}, None
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if m and "=" not in line.split("{")[0]:
      current = computations.setdefault(m.group(1), [])
      continue
    op = re.match(r"\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*\S+\s+([\w\-]+)\(", line)
    if op and current is not None:
      current.append(op.group(1))
  out = {}
  for line in hlo_text.splitlines():
    m = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*\bfusion\(.*kind=(\w+).*calls=%?([\w.\-]+)", line)
    if m:
      ops = [o for o in computations.get(m.group(3), []) if o != "parameter"]
      out[m.group(1)] = f"{m.group(2)}: " + ", ".join(
          f"{k} x{v}" if v > 1 else k for k, v in collections.Counter(ops).most_common(6))
  return out


def covered_ns(spans):
  """The time covered by the union of (start, end) spans: an instruction whose
  work runs on several threads at once, or is traced nested, counts its wall once."""
  total, end = 0, None
  for start, stop in sorted(spans):
    if end is None or start > end:
      total, end = total + stop - start, stop
    elif stop > end:
      total, end = total + stop - end, stop
  return total


def category(name, what):
  """convolution, a fusion with a reduce (BatchNorm statistics, the loss's sums),
  another fusion (elementwise / layout), or the instruction's own kind."""
  if name.startswith("convolution") or "convolution" in what:
    return "convolution"
  if "fusion" in name or what:
    return "fusion with reduce" if "reduce" in what else "fusion, elementwise / layout"
  return re.sub(r"[.\d]+$", "", name) or name


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="decoder")
  parser.add_argument("--upsample", default="nearest")
  parser.add_argument("--backbone", default="small")
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--num_classes", type=int, default=7)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--top", type=int, default=25)
  args = parser.parse_args()
  opts = benchmark.Options(backbone=args.backbone, size=args.size, batch_size=args.batch_size,
                           num_classes=args.num_classes)
  model = benchmark.build_model(args.model, args.upsample, opts)
  batch = benchmark.synthetic_batch(opts)
  state = state_lib.create_train_state(
      model, optax.sgd(benchmark.LEARNING_RATE, benchmark.MOMENTUM), jax.random.key(0),
      (1,) + batch["image"].shape[1:])
  driver = parallel.make_driver("jit", loss_fn=losses.make_loss("ce"),
                                num_classes=args.num_classes)
  carry = {"state": driver.put_state(state)}
  rng = jax.random.key(0)

  def step():  # the bench's step (`benchmark.jax_step`)
    carry["state"], metrics = driver.train(carry["state"], batch, rng)
    jax.block_until_ready(metrics)

  for _ in range(3):  # compile and warm up
    step()
  start = time.perf_counter()
  for _ in range(args.steps):
    step()
  wall_ms = (time.perf_counter() - start) / args.steps * 1e3
  hlo = driver.train_step.lower(carry["state"], driver.put_batch(batch), rng).compile().as_text()
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(args.steps):
        step()
    [path] = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  what = fused_ops(hlo)
  names = set(re.findall(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=", hlo, re.M))
  spans = collections.defaultdict(list)  # instruction -> its events' (start, end), any thread
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name in names:  # an instruction of the step's program
          spans[event.name].append((event.start_ns, event.end_ns))
  per_op = collections.Counter({name: covered_ns(s) / 1e6 / args.steps
                                for name, s in spans.items()})
  total = sum(per_op.values())
  by_category = collections.Counter()
  for name, ms in per_op.items():
    by_category[category(name, what.get(name, ""))] += ms
  print(f"{args.model} {args.upsample}, {args.backbone}, {args.size}x{args.size}, batch "
        f"{args.batch_size}: {wall_ms:.1f} ms per step untraced, {total:.1f} ms in traced HLO "
        "instructions")
  print("| category | ms / step | share |\n|---|---:|---:|")
  for name, ms in by_category.most_common():
    print(f"| {name} | {ms:.1f} | {ms / total:.0%} |")
  print(f"\n| instruction | ms / step | share | fuses |\n|---|---:|---:|---|")
  for name, ms in per_op.most_common(args.top):
    print(f"| {name} | {ms:.2f} | {ms / total:.1%} | {what.get(name, '')} |")


if __name__ == "__main__":
  main()
