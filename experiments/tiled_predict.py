"""Peak RSS and time of fcnjax-predict against image size, tiled and in one pass.

    python experiments/tiled_predict.py --out=experiments/results/tiled_predict \
        [--sizes=512,1024,2048,4032x3024,8000] [--full_max_pixels=13000000]

The default model (fcn8s_shapes: FCN-8s, small BN VGG, 'same' geometry) with
random weights is saved in a temporary folder (weights do not change memory or time).
For each size a shapes-like PNG is written and `python -m fcnjax.commands.predict` runs
on it in a fresh process, with the default tile (--tile=0) and, up to
--full_max_pixels, in one full-image pass (--tile=-1); the process's peak RSS
(wait4) and wall time are recorded. A second child times the segmentation
alone (`inference.predict_image`, compiled first, best of --repeats) tiled and
in one pass, and checks the labels are equal: the tiled cost against one
full-image pass. Writes OUT/results.json, OUT/rss_time.png and prints a table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

from fcnjax import inference, tiles
from fcnjax.configs import fcn8s_shapes
from fcnjax.data import pipeline, shapes
from fcnjax.runtime import cli
from fcnjax.train import assemble, checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = ["--config=fcn8s_shapes", "--config.data.tfds_config=tiny"]


def parse_size(text):
  """'8000' -> (8000, 8000); '4032x3024' -> (3024, 4032) as (H, W)."""
  w, _, h = text.partition("x")
  return (int(h or w), int(w))


def config(work):
  c = fcn8s_shapes.get_config()
  c.data.tfds_config = "tiny"
  c.data.data_dir = os.path.join(work, "tfds")
  c.model.zero_init_score = False  # random score layers: mixed labels
  return c


def make_workdir(work):
  """A checkpoint of the default model with random weights, in work/w."""
  c = config(work)
  state = assemble.create_state(c, assemble.build_model(c, pipeline.get_info(c.data)),
                                jax.random.key(0))[0]
  ckpt = checkpoint.Checkpoints(os.path.join(work, "w"))
  ckpt.save(1, state)
  ckpt.close()


def make_image(path, height, width, block=512):
  """Shapes examples (block x block) side by side, written as a PNG."""
  rows = []
  for r in range(-(-height // block)):
    cols = [shapes.render_example(3, r * 64 + c, block)[0] for c in range(-(-width // block))]
    rows.append(np.concatenate(cols, 1)[:, :width])
  Image.fromarray(np.concatenate(rows, 0)[:height]).save(path)


def run_predict(work, image, tile, extra=()):
  """(peak RSS MB, wall s, exit status) of fcnjax.commands.predict on one image
  (`extra`: more of its flags, e.g. --tta_scales)."""
  cmd = [sys.executable, "-m", "fcnjax.commands.predict", *CONFIG, *extra,
         f"--config.data.data_dir={os.path.join(work, 'tfds')}",
         "--config.model.zero_init_score=false", f"--workdir={os.path.join(work, 'w')}",
         f"--input={image}", f"--output={os.path.join(work, 'out')}", "--checkpoint=latest",
         f"--tile={tile}", "--compilation_cache_dir="]  # every run compiles afresh
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - start
  err = proc.stderr.read().decode()
  code = os.waitstatus_to_exitcode(status)
  if code:
    print(err[-2000:], file=sys.stderr)
  return usage.ru_maxrss / 1024, wall, code


def time_child(work, image, full, repeats):
  """In a child process: seconds of predict_image tiled (and in one pass if
  `full`), best of `repeats` after a compiling call; window pixels / image pixels."""
  cli.configure_xla()  # as the entry points do, before JAX starts
  cli.configure_allocator()
  c = config(work)
  state, _ = inference.restore(c, os.path.join(work, "w"), "latest")
  core, halo = inference.tiling(state, 0)
  rgb = inference.read_rgb(image)
  out = {"core": core, "halo": halo}
  h, w = rgb.shape[:2]
  spans = [(y1 - y0) * (x1 - x0) for y0, y1, _, _ in tiles.windows(h, core, halo)
           for x0, x1, _, _ in tiles.windows(w, core, halo)]
  out["windows"], out["window_pixels_ratio"] = len(spans), sum(spans) / (h * w)
  modes = {"tiled": core} if not full else {"tiled": core, "full": None}
  labels = {}
  for mode, tile_core in modes.items():
    labels[mode] = inference.predict_image(state, rgb, c.data.normalization, tile_core, halo)
    best = float("inf")
    for _ in range(repeats):
      start = time.perf_counter()
      inference.predict_image(state, rgb, c.data.normalization, tile_core, halo)
      best = min(best, time.perf_counter() - start)
    out[f"{mode}_s"] = best
  if full:
    out["labels_equal"] = bool(np.array_equal(labels["tiled"], labels["full"]))
  print(json.dumps(out))


def run_timing(work, image, full, repeats):
  cmd = [sys.executable, os.path.abspath(__file__), f"--time_child={image}",
         f"--work={work}", f"--repeats={repeats}"] + (["--full"] if full else [])
  lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
  return json.loads(lines[-1])


def measure(args):
  work = tempfile.mkdtemp(prefix="tiled_predict_")
  make_workdir(work)
  rows = []
  for text in args.sizes.split(","):
    h, w = parse_size(text)
    image = os.path.join(work, f"image_{w}x{h}.png")
    make_image(image, h, w)
    full = h * w <= args.full_max_pixels
    row = {"size": f"{w}x{h}", "megapixels": h * w / 1e6}
    for mode, tile in [("tiled", 0)] + ([("full", -1)] if full else []):
      rss, wall, code = run_predict(work, image, tile, args.predict_flags.split())
      row.update({f"{mode}_rss_mb": rss, f"{mode}_wall_s": wall, f"{mode}_status": code})
    if not args.skip_timing:
      row.update(run_timing(work, image, full, args.repeats))
    os.remove(image)
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def table(rows):
  lines = ["   size |   MP | tiles | px ratio | RSS MB tiled    full | predict s tiled   full "
           "| segment s tiled   full | equal"]
  for r in rows:
    f = lambda k, fmt: format(r[k], fmt) if k in r else "-".rjust(len(format(0, fmt)))
    lines.append(f"{r['size']:>9} | {r['megapixels']:4.1f} | {f('windows', '5d')} | "
                 f"{f('window_pixels_ratio', '7.2f')}x | {f('tiled_rss_mb', '11.0f')} "
                 f"{f('full_rss_mb', '7.0f')} | {f('tiled_wall_s', '15.1f')} "
                 f"{f('full_wall_s', '6.1f')} | {f('tiled_s', '15.2f')} {f('full_s', '6.2f')} "
                 f"| {r.get('labels_equal', '-')}")
  return "\n".join(lines)


def plot(rows, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for mode, marker in (("tiled", "o-"), ("full", "s--")):
    pts = [(r["megapixels"], r[f"{mode}_rss_mb"], r[f"{mode}_s"]) for r in rows
           if f"{mode}_rss_mb" in r]
    mp, rss, sec = zip(*pts)
    ax1.plot(mp, rss, marker, label=f"{mode} (--tile={0 if mode == 'tiled' else -1})")
    ax2.plot(mp, sec, marker, label=mode)
  ax1.axhline(2048, color="gray", lw=0.8, ls=":")
  ax1.set(xlabel="image megapixels", ylabel="peak RSS of fcnjax-predict (MB)",
          title="memory")
  ax2.set(xlabel="image megapixels", ylabel="segmentation time (s, best of repeats)",
          title="time (2 shared CPU cores)")
  for ax in (ax1, ax2):
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join(HERE, "results", "tiled_predict"))
  parser.add_argument("--sizes", default="512,1024,2048,4032x3024,8000")
  parser.add_argument("--full_max_pixels", type=int, default=13_000_000)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--predict_flags", default="",
                      help="more fcnjax-predict flags, e.g. '--tta_scales=0.75,1,1.25 --tta_flip'")
  parser.add_argument("--skip_timing", action="store_true",
                      help="RSS and wall time of fcnjax-predict only (no timing child)")
  parser.add_argument("--time_child")
  parser.add_argument("--work")
  parser.add_argument("--full", action="store_true")
  args = parser.parse_args()
  if args.time_child:
    return time_child(args.work, args.time_child, args.full, args.repeats)
  os.makedirs(args.out, exist_ok=True)
  rows = measure(args)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)
  plot(rows, os.path.join(args.out, "rss_time.png"))
  print(table(rows))


if __name__ == "__main__":
  main()
