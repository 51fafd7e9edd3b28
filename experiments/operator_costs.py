"""What each upsampling operator costs, and what three learned ones learned.

    python experiments/operator_costs.py [--out=DIR] [--time] [--large] [--figure]

Study decoder: every operator of `models.UPSAMPLERS` in the upsampling
study's model (configs/upsampling_study.py: the decoder family on backbone
'small', depth 4, 64x64 images, batch 16, the dataset's 7 classes), without
skips; the guided operators (FADE, SAPA) with skips=True, the study's guided
context, where nearest, bilinear and CARAFE are listed again for comparison.
Per operator: its kind and what it needs (`models/operator.py`); parameters
added relative to the same decoder with 'nearest' (same skips setting);
forward and forward+backward GFLOPs per image (XLA's cost analysis of the
compiled function, `compile().cost_analysis()['flops']`); bytes per image
the encoder hands the decoder because of the operator (what
`operator.encoder_input` gives each x2 step: switches uint8, IndexNet's
decoder index, the guidance maps; checked against the switches / index maps
the backbone sows; 0 for 'nothing'); with --time, forward (eval mode) and
forward+backward (the gradient of the training loss, BatchNorm in training
mode) ms per batch, medians over interleaved warm runs.

--large: FCN-8s and U-Net on ResNet-50 at 512x512, batch 1, 21 classes:
forward+backward GFLOPs and peak memory (temp + argument + output bytes of
XLA's compiled memory analysis) per operator the pair allows, the refusal
otherwise; U-Net on VGG16 for the operators ResNet refuses. With --time it
also times the cases of --large_timed (compiles take about half a minute).

--figure: trains the study decoder with 'carafe', 'dysample-s+' and
'indexnet' (`train.loop.train_and_evaluate`, the study config; --steps,
default the study's budget of 1500: after 400, CARAFE and DySample-S+ still
predicted only background) and draws, on one test image, CARAFE's kernels
at the last x2 stage, DySample's offsets there and IndexNet's decoder index
at the finest pool (DIR/learned.png). --out=DIR also writes DIR/costs.md
and DIR/costs.json.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

from fcnjax.runtime import cli

cli.configure_xla()  # before JAX starts, as the entry points do
cli.configure_allocator()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from fcnjax import models, viz  # noqa: E402
from fcnjax.configs import upsampling_study  # noqa: E402
from fcnjax.data import pipeline  # noqa: E402
from fcnjax.inference import restore  # noqa: E402
from fcnjax.models.operator import encoder_input  # noqa: E402
from fcnjax.ops.upsample import pixel_shuffle  # noqa: E402
from fcnjax.studies import benchmark, experiment, study  # noqa: E402
from fcnjax.train import loop, losses  # noqa: E402

SKIP_COMPARISON = ("nearest", "bilinear", "carafe")  # also listed in the guided context
DEPTHWISE = {"block": "depthwise"}  # config.model.upsample_options of one extra row
LEARNED = ("carafe", "dysample-s+", "indexnet")  # the figure's operators
LARGE_FAMILIES = {"FCN-8s": dict(name="fcn", variant="8s"), "U-Net": dict(name="unet")}


def per_image(leaf):
  return int(np.prod(leaf.shape[1:])) * leaf.dtype.itemsize


class Case:
  """One model: abstract variables, parameter count, compiled forward / gradient."""

  def __init__(self, model_config, num_classes, batch, size):
    self.op = models.resolve(model_config["upsample"], model_config.get("upsample_options"))
    self.model = models.build_model(model_config, num_classes)
    self.batch, self.num_classes = batch, num_classes
    self.x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    self.y = jax.ShapeDtypeStruct((batch, size, size), jnp.int32)
    init = jax.eval_shape(lambda x: self.model.init(jax.random.key(0), x), self.x)
    self.variables = {k: v for k, v in init.items() if k in ("params", "batch_stats")}
    self.params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(self.variables["params"]))

  def forward(self, variables, x):
    return self.model.apply(variables, x, train=False)

  def gradient(self, variables, x, y):
    """Gradient of the mean per-pixel cross-entropy (the training loss) w.r.t. params."""
    def loss(params):
      logits, updated = self.model.apply({**variables, "params": params}, x, train=True,
                                         mutable=["batch_stats"])
      total, valid = losses.cross_entropy_sum(logits, y)
      return total / valid, updated
    return jax.grad(loss, has_aux=True)(variables["params"])

  def compile(self, which):
    if which == "forward":
      return jax.jit(self.forward).lower(self.variables, self.x).compile()
    return jax.jit(self.gradient).lower(self.variables, self.x, self.y).compile()

  def kept_bytes(self):
    """Bytes per image the encoder hands the decoder because of the operator: what
    `encoder_input` gives each x2 step from the backbone's features (for switches and
    index, checked equal to the maps the backbone sows)."""
    def run(variables, x):
      _, state = self.model.apply(
          variables, x, mutable=["intermediates"],
          capture_intermediates=lambda m, method: m.name == "backbone" and method == "__call__")
      return state["intermediates"]["backbone"]
    sown = jax.eval_shape(run, self.variables, self.x)
    features = sown.pop("__call__")[0]
    strides = sorted(int(k[len("stride"):]) for k in features if k.startswith("stride"))
    given = [encoder_input(self.op, features, s) for s in strides if s > 1]
    kept = sum(per_image(g) for g in given if g is not None)
    if self.op.needs in ("switches", "index"):
      maps = sum(per_image(leaf) for k, v in sown.items() if k.startswith(("switches", "index"))
                 for leaf in jax.tree.leaves(v))
      assert maps == kept, (self.op.name, maps, kept)
    return kept

  def concrete(self, seed=0):
    """Random inputs of the case's shapes and initialised variables."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=self.x.shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, self.num_classes, size=self.y.shape), jnp.int32)
    init = self.model.init(jax.random.key(0), x)
    return {k: v for k, v in init.items() if k in ("params", "batch_stats")}, x, y


def median_ms(calls, repeats):
  """Median ms of each call over interleaved warm runs (`benchmark.time_interleaved`:
  every round runs each call once, then times each once; both runs are samples)."""
  benchmark.time_interleaved(calls, 0)  # warm-up
  samples = [[] for _ in calls]
  for _ in range(repeats):
    for s, (first, total) in zip(samples, benchmark.time_interleaved(calls, 1)):
      s += [first, total]
  return [1e3 * statistics.median(s) for s in samples]


def study_cases():
  """(operator, skips, options) of the study decoder's table: every registered operator,
  IndexNet with upsample_options block='depthwise' too, the guided context last."""
  plain = [(n, False, {}) for n in models.UPSAMPLERS if not models.resolve(n).guided]
  plain.insert(plain.index(("indexnet", False, {})) + 1, ("indexnet", False, DEPTHWISE))
  guided = [(n, True, {}) for n in models.UPSAMPLERS if models.resolve(n).guided]
  return plain + [(n, True, {}) for n in SKIP_COMPARISON] + guided


def decoder_rows(time_it, repeats):
  config = upsampling_study.get_config()
  num_classes = len(pipeline.dataset(config.data.name).CLASS_NAMES)
  size, batch = config.data.crop_size, config.batch_size
  cases, rows = {}, []
  for name, skips, options in study_cases():
    case = Case({**config.model, "upsample": name, "skips": skips,
                 "upsample_options": options}, num_classes, batch, size)
    cases[name, skips, str(options)] = case
    fwd, grad = case.compile("forward"), case.compile("gradient")
    case.fns = fwd, grad
    rows.append(dict(operator=name + "".join(f" ({k}={v})" for k, v in options.items()),
                     skips=skips, kind=", ".join(case.op.kind),
                     needs=case.op.needs, params=case.params,
                     fwd_gflops=fwd.cost_analysis()["flops"] / batch / 1e9,
                     fwd_bwd_gflops=grad.cost_analysis()["flops"] / batch / 1e9,
                     kept_bytes=case.kept_bytes()))
    print(f"  {rows[-1]['operator']} skips={skips}: compiled", flush=True)
  for row in rows:
    row["params_added"] = row["params"] - cases["nearest", row["skips"], "{}"].params
  if time_it:
    calls = []
    for case in cases.values():
      variables, x, y = case.concrete()
      fwd, grad = case.fns
      calls += [lambda f=fwd, v=variables, x=x: jax.block_until_ready(f(v, x)),
                lambda f=grad, v=variables, x=x, y=y: jax.block_until_ready(f(v, x, y))]
    ms = median_ms(calls, repeats)
    for i, row in enumerate(rows):
      row["fwd_ms"], row["fwd_bwd_ms"] = ms[2 * i], ms[2 * i + 1]
  return rows


def large_rows(timed, repeats, size=512, num_classes=21):
  """FCN-8s and U-Net on ResNet-50 at size x size, batch 1, per operator (the
  refusal where the pair has none); U-Net on VGG16 for what ResNet refuses."""
  plan = [(f, "resnet50", n) for f in LARGE_FAMILIES for n in models.UPSAMPLERS]
  rows, cases = [], {}

  def measure(family, backbone, name):
    row = dict(family=family, backbone=backbone, operator=name)
    try:
      case = Case({**LARGE_FAMILIES[family], "backbone": backbone, "upsample": name},
                  num_classes, 1, size)
    except ValueError as e:
      return {**row, "refused": str(e)}
    start = time.perf_counter()
    case.grad = case.compile("gradient")
    mem = case.grad.memory_analysis()
    cases[family, backbone, name] = case
    row.update(params=case.params, fwd_bwd_gflops=case.grad.cost_analysis()["flops"] / 1e9,
               peak_mib=(mem.temp_size_in_bytes + mem.argument_size_in_bytes +
                         mem.output_size_in_bytes) / 2 ** 20,
               kept_bytes=case.kept_bytes(), compile_s=time.perf_counter() - start)
    print(f"  {family} {backbone} {name}: compiled in {row['compile_s']:.0f} s", flush=True)
    return row

  rows = [measure(*key) for key in plan]
  refused = [r["operator"] for r in rows
             if r["family"] == "U-Net" and "refused" in r]
  if refused:
    rows += [measure("U-Net", "vgg16", n) for n in ["nearest"] + refused]
  for row in rows:
    base = cases.get((row["family"], row["backbone"], "nearest"))
    if "params" in row and base is not None:
      row["params_added"] = row["params"] - base.params
  if timed:
    keyed = {(r["family"], r["backbone"], r["operator"]): r for r in rows}
    calls = []
    for key in timed:
      variables, x, y = cases[key].concrete()
      calls.append(lambda f=cases[key].grad, v=variables, x=x, y=y:
                   jax.block_until_ready(f(v, x, y)))
    for key, ms in zip(timed, median_ms(calls, repeats)):
      keyed[key]["fwd_bwd_ms"] = ms
  return rows


def _cell(row, key, fmt):
  return fmt.format(row[key]) if key in row else "-"


def decoder_table(rows):
  head = ("| operator | skips | kind | needs | params added | fwd GFLOP/img | fwd+bwd GFLOP/img "
          "| kept bytes/img | fwd ms/batch | fwd+bwd ms/batch |")
  lines = [head, "|" + "---|" * 4 + "---:|" * 6]
  for r in rows:
    lines.append(f"| {r['operator']} | {'yes' if r['skips'] else 'no'} | {r['kind']} | "
                 f"{r['needs']} | {r['params_added']:,} | {r['fwd_gflops']:.4f} | "
                 f"{r['fwd_bwd_gflops']:.4f} | {r['kept_bytes']:,} | "
                 f"{_cell(r, 'fwd_ms', '{:.1f}')} | {_cell(r, 'fwd_bwd_ms', '{:.1f}')} |")
  return "\n".join(lines)


def large_table(rows):
  lines = ["| family | backbone | operator | params added | fwd+bwd GFLOP | peak MiB "
           "| kept bytes | compile s | fwd+bwd ms |", "|---|---|---|" + "---:|" * 6]
  refusals = {}
  for r in rows:
    if "refused" in r:
      refusals.setdefault((r["family"], r["backbone"], r["refused"]), []).append(r["operator"])
      continue
    lines.append(f"| {r['family']} | {r['backbone']} | {r['operator']} | "
                 f"{_cell(r, 'params_added', '{:,}')} | {r['fwd_bwd_gflops']:.1f} | "
                 f"{r['peak_mib']:.0f} | {r['kept_bytes']:,} | {r['compile_s']:.0f} | "
                 f"{_cell(r, 'fwd_bwd_ms', '{:.0f}')} |")
  lines += ["", "Refused:", ""]
  lines += [f"- {family} on {backbone}: {', '.join(names)}: {reason}"
            for (family, backbone, reason), names in refusals.items()]
  return "\n".join(lines)


def train_learned(steps, workdir, image_index):
  """{operator: (config, host state, test image, label, logits, intermediates, scores)}
  of the study decoder trained `steps` steps with each of LEARNED."""
  out = {}
  for name in LEARNED:
    config = upsampling_study.get_config()
    config = experiment.with_fields(config, {
        "model.upsample": name, "num_train_steps": steps, "eval_every_steps": steps,
        "checkpoint_every_steps": steps,
        "optimizer.warmup_steps": min(config.optimizer.warmup_steps, steps // 5)})
    run_dir = os.path.join(workdir, name)
    start = time.perf_counter()
    scores = loop.train_and_evaluate(config, run_dir)
    seconds = time.perf_counter() - start
    state, _ = restore(config, run_dir, which="latest")
    test = experiment.with_fields(config, {"data.eval_split": study.TEST_SPLIT,
                                           "data.num_eval": image_index + 1}).data
    batch = list(pipeline.eval_batches(test, 1))[image_index]
    logits, inter = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                                   batch["image"], train=False, capture_intermediates=True,
                                   mutable=["intermediates"])
    out[name] = dict(image=pipeline.denormalize(np.asarray(batch["image"][0]),
                                                config.data.normalization),
                     label=np.asarray(batch["label"][0]), pred=np.argmax(logits[0], -1),
                     inter=inter["intermediates"], miou=scores.get("mean_iou"),
                     train_s=seconds)
    print(f"  {name}: {steps} steps in {seconds:.0f} s, selection mIoU "
          f"{scores.get('mean_iou', float('nan')):.3f}", flush=True)
  return out


def carafe_kernels(inter):
  """(H, W, k_up^2) kernels of the decoder's last x2 stage ('up1'), as CARAFE makes them."""
  logits = inter["up1"]["encoder"]["__call__"][0]
  return np.asarray(jax.nn.softmax(pixel_shuffle(logits, 2), axis=-1)[0])


def dysample_offsets(inter, groups):
  """(H, W, 2) learned offsets (x, y; source pixels, group mean) of DySample-S+ at 'up1'
  (style 'pl', dynamic scope: 0.5 sigmoid(scope) * offset, before the initial grid)."""
  up = inter["up1"]
  offset = up["offset"]["__call__"][0] * jax.nn.sigmoid(up["scope"]["__call__"][0]) * 0.5
  h, w = offset.shape[1:3]
  return np.asarray(offset[0].reshape(h, w, 2, groups).mean(-1))


def sample_pixels(label, weight, n=3):
  """n boundary pixels (farthest-point from the one with the sharpest kernel) and the
  object pixel farthest from any boundary."""
  from scipy import ndimage
  edge = np.zeros(label.shape, bool)
  edge[:-1] |= label[:-1] != label[1:]
  edge[1:] |= label[:-1] != label[1:]
  edge[:, :-1] |= label[:, :-1] != label[:, 1:]
  edge[:, 1:] |= label[:, :-1] != label[:, 1:]
  candidates = np.argwhere(edge)
  picked = [candidates[np.argmax(weight[edge])]]
  while len(picked) < n:
    dist = np.min([np.abs(candidates - p).sum(1) for p in picked], axis=0)
    picked.append(candidates[np.argmax(dist)])
  far = ndimage.distance_transform_edt(~edge) * (label != 0 if (label != 0).any() else 1)
  picked.append(np.unravel_index(np.argmax(far), far.shape))
  return [tuple(int(v) for v in p) for p in picked]


def learned_figure(path, trained, palette):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  car, dys, idx = (trained[n] for n in LEARNED)
  image, label = car["image"], car["label"]
  kernels = carafe_kernels(car["inter"])
  k = int(round(np.sqrt(kernels.shape[-1])))
  weight = kernels.max(-1)
  entropy = -(kernels * np.log2(np.maximum(kernels, 1e-12))).sum(-1)
  groups = dys["inter"]["up1"]["offset"]["__call__"][0].shape[-1] // 2
  offsets = dysample_offsets(dys["inter"], groups)
  magnitude = np.hypot(offsets[..., 0], offsets[..., 1])
  index = np.asarray(idx["inter"]["backbone"]["index1"][0][0, ..., 0])
  index2 = np.asarray(idx["inter"]["backbone"]["index2"][0][0, ..., 0])
  pixels = sample_pixels(label, weight)
  fig, axes = plt.subplots(3, 5, figsize=(17, 10.5))
  show = lambda ax, a, title, **kw: (ax.imshow(a, **kw), ax.set_title(title, fontsize=9))  # noqa
  show(axes[0, 0], image, "test image (CARAFE kernels at 1-4)")
  for i, (r, c) in enumerate(pixels):
    axes[0, 0].annotate(str(i + 1), (c, r), color="yellow", fontsize=10, ha="center",
                        va="center", weight="bold")
  show(axes[0, 1], viz.colorize(label, palette), "ground truth")
  im = show(axes[0, 2], weight, "CARAFE (last x2): max tap weight", cmap="viridis")[0]
  fig.colorbar(im, ax=axes[0, 2], fraction=0.046)
  im = show(axes[0, 3], entropy, f"CARAFE: entropy, bits (uniform {np.log2(k * k):.2f})",
            cmap="magma")[0]
  fig.colorbar(im, ax=axes[0, 3], fraction=0.046)
  show(axes[0, 4], viz.colorize(car["pred"], palette), "carafe prediction")
  for i, (r, c) in enumerate(pixels):
    im = show(axes[1, i], kernels[r, c].reshape(k, k), f"CARAFE kernel at {i + 1} "
              f"(row {r}, col {c})", cmap="viridis", vmin=0)[0]
    for a in range(k):
      for b in range(k):
        axes[1, i].text(b, a, f"{kernels[r, c, a * k + b]:.2f}", ha="center", va="center",
                        fontsize=7, color="white")
  show(axes[1, 4], viz.colorize(dys["pred"], palette), "dysample-s+ prediction")
  im = show(axes[2, 0], magnitude, "DySample-S+ (last x2): |offset|, stride-2 px",
            cmap="viridis")[0]
  fig.colorbar(im, ax=axes[2, 0], fraction=0.046)
  step = 4
  ys, xs = np.mgrid[0:label.shape[0]:step, 0:label.shape[1]:step]
  scale = 0.5 * step / max(magnitude.max() * 2, 1e-9)
  axes[2, 1].imshow(image)
  axes[2, 1].quiver(xs, ys, 2 * scale * offsets[ys, xs, 0], 2 * scale * offsets[ys, xs, 1],
                    color="yellow", angles="xy", scale_units="xy", scale=1, width=0.004)
  axes[2, 1].set_title(f"DySample-S+ offsets (arrows x{scale:.1f})", fontsize=9)
  im = show(axes[2, 2], index, "IndexNet decoder index, pool1", cmap="gray", vmin=0, vmax=1)[0]
  fig.colorbar(im, ax=axes[2, 2], fraction=0.046)
  im = show(axes[2, 3], index2, "IndexNet decoder index, pool2", cmap="gray", vmin=0,
            vmax=1)[0]
  fig.colorbar(im, ax=axes[2, 3], fraction=0.046)
  show(axes[2, 4], viz.colorize(idx["pred"], palette), "indexnet prediction")
  for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return dict(pixels=pixels, max_weight_mean=float(weight.mean()),
              entropy_mean=float(entropy.mean()), offset_mean=float(magnitude.mean()),
              offset_max=float(magnitude.max()), index1_range=(float(index.min()),
                                                              float(index.max())))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=None, help="write costs.md, costs.json (and learned.png)")
  parser.add_argument("--time", action="store_true", help="also time forward / forward+backward")
  parser.add_argument("--repeats", type=int, default=3, help="timed rounds (2 samples each)")
  parser.add_argument("--large", action="store_true",
                      help="FCN-8s / U-Net on ResNet-50 (U-Net on VGG16) at 512x512")
  parser.add_argument("--large_timed", default="U-Net/resnet50/bilinear,U-Net/resnet50/carafe",
                      help="family/backbone/operator cases --large times with --time")
  parser.add_argument("--figure", action="store_true",
                      help="train carafe, dysample-s+, indexnet and draw learned.png")
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps for --figure (default: the study's budget)")
  parser.add_argument("--image", type=int, default=0, help="test image index for --figure")
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp(prefix="operator_costs_")
  os.makedirs(out, exist_ok=True)
  start = time.perf_counter()
  report, md = dict(provenance=study.provenance(), load_before=os.getloadavg()), []
  print("study decoder:", flush=True)
  report["decoder"] = decoder_rows(args.time, args.repeats)
  md += ["## Study decoder (64x64, batch 16)", "", decoder_table(report["decoder"])]
  print("\n".join(md[-1:]), flush=True)
  if args.large:
    print("large:", flush=True)
    timed = [tuple(c.split("/")) for c in args.large_timed.split(",")] if args.time else []
    report["large"] = large_rows(timed, args.repeats)
    md += ["", "## 512x512, batch 1, 21 classes (forward+backward)", "",
           large_table(report["large"])]
    print(md[-1], flush=True)
  if args.figure:
    print("figure:", flush=True)
    config = upsampling_study.get_config()
    palette = pipeline.get_info(config.data).palette
    with tempfile.TemporaryDirectory() as workdir:
      trained = train_learned(args.steps or config.num_train_steps, workdir, args.image)
    report["figure"] = learned_figure(os.path.join(out, "learned.png"), trained, palette)
    report["figure"].update({n: dict(selection_miou=t["miou"], train_s=t["train_s"])
                             for n, t in trained.items()})
    print(json.dumps(report["figure"]), flush=True)
  report["wall_s"] = time.perf_counter() - start
  report["load_after"] = os.getloadavg()
  with open(os.path.join(out, "costs.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  with open(os.path.join(out, "costs.json"), "w") as f:
    json.dump(report, f, indent=1, default=str)
  print(f"wall {report['wall_s']:.0f} s; load {report['load_before']} -> "
        f"{report['load_after']}; written to {out}")


if __name__ == "__main__":
  main()
