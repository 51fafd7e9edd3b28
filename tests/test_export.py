"""fcnjax-export: the file it writes, loaded in a fresh process that imports
only jax and numpy, gives fcnjax-predict's labels at two image sizes and two
batch sizes; float input and logits in process; a model whose sizes cannot
stay symbolic exports at a fixed size; a bad --out, --checkpoint or
--image_size is one `error:` line and nothing is written (in process, and
once through the command)."""
import json
import os
import re
import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest
from PIL import Image

from fcnjax import exporting
from fcnjax.commands import predict
from fcnjax.data import pipeline
from fcnjax.runtime import errors
from fcnjax.train import assemble
from test_predict_images import random_model  # noqa: F401  (module fixture: random weights)
from test_train import tiny_config

# Run as `python -c LOADER FILE IN.npz OUT.npz`: each array of IN through the file.
LOADER = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    with open(sys.argv[1], "rb") as f:
      exported = jax.export.deserialize(bytearray(f.read()))
    images = np.load(sys.argv[2])
    labels = {k: np.asarray(exported.call(images[k])) for k in images.files}
    assert not [m for m in sys.modules if m.split(".")[0] == "fcnjax"], "fcnjax imported"
    np.savez(sys.argv[3], **labels)
""")


def _run(args, cwd):
  done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def test_exported_file_gives_predicts_labels_in_a_fresh_process(random_model, tmp_path):
  config, _, _, workdir = random_model
  out = str(tmp_path / "model.jaxexport")
  exporting.export_model(config, workdir, out, which="latest")  # what fcnjax-export calls
  with open(out + ".json") as f:
    description = json.load(f)
  assert description["input"] == {"shape": "(b, 32*h, 32*w, 3)", "dtype": "uint8",
                                  "values": "RGB, 0..255; normalisation included"}
  assert description["step"] == 0 and len(description["class_names"]) == len(
      description["palette"])
  rng = np.random.default_rng(0)
  batches = {"two_64x96": rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8),
             "three_32x160": rng.integers(0, 256, (3, 32, 160, 3), dtype=np.uint8)}
  np.savez(tmp_path / "in.npz", **batches)
  _run(["-c", LOADER, out, str(tmp_path / "in.npz"), str(tmp_path / "labels.npz")],
       cwd=str(tmp_path))
  labels = np.load(tmp_path / "labels.npz")
  folder = tmp_path / "images"
  folder.mkdir()
  for name, images in batches.items():
    for i, image in enumerate(images):
      Image.fromarray(image).save(folder / f"{name}_{i}.png")
  # fcnjax-predict --tile=-1 (one pass per image: these images fit one tile anyway)
  assert predict.predict(config, workdir, str(folder), str(tmp_path / "pred"), "latest",
                         tile=None) == 0
  for name, images in batches.items():
    assert labels[name].shape == images.shape[:3] and labels[name].dtype == np.int32
    for i in range(len(images)):
      with Image.open(tmp_path / "pred" / f"{name}_{i}.png") as mask:
        np.testing.assert_array_equal(labels[name][i], np.asarray(mask), err_msg=name)
    assert len(np.unique(labels[name])) >= 2  # non-trivial masks


def test_float_input_and_logits(random_model):
  config, model, state, _ = random_model
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 64, 3), dtype=np.uint8)
  in_graph = jax.jit(exporting.normalize, static_argnums=1)
  for mode in pipeline.NORMALIZATIONS:  # uint8: pipeline's values exactly; float: a few ulps
    np.testing.assert_array_equal(in_graph(images, mode), pipeline.normalize(images, mode))
    np.testing.assert_allclose(in_graph(images.astype(np.float32), mode),
                               pipeline.normalize(images, mode), rtol=3e-7, atol=3e-7)
  fn = exporting.inference_function(state, config.data.normalization, logits=True)
  exported = exporting.export_function(fn, "float32")
  labels, logits = exported.call(images.astype(np.float32))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  expected = jax.jit(model.apply)(variables,
                                  pipeline.normalize(images, config.data.normalization))
  np.testing.assert_allclose(logits, expected, rtol=1e-5,  # random weights: logits ~1e7
                             atol=1e-5 * np.abs(expected).max())
  np.testing.assert_array_equal(labels, np.argmax(logits, -1))
  with pytest.raises(ValueError, match="Input shapes do not match"):  # 33 is no multiple of 32
    exported.call(np.zeros((1, 33, 64, 3), np.float32))


def test_a_model_whose_sizes_cannot_stay_symbolic_exports_at_a_fixed_size(random_model):
  config = tiny_config(random_model[0].data.data_dir, **{"model.name": "unet"})
  model = assemble.build_model(config, pipeline.get_info(config.data))
  shapes = jax.eval_shape(lambda k: model.init(k, np.zeros((1, 32, 32, 3)), train=False),
                          jax.random.key(0))  # only the shapes matter here: zero weights
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  fn = exporting.inference_function(types.SimpleNamespace(apply_fn=model.apply, **variables),
                                    config.data.normalization)
  with pytest.raises(ValueError, match=r"^--image_size=any: the model does not export with "
                     r"image sizes \(h, w\) .*give a fixed size with --image_size=H,W"):
    exporting.export_function(fn, image_size="any")
  exported = exporting.export_function(fn, image_size="64,32")
  assert exported.call(np.zeros((3, 64, 32, 3), np.uint8)).shape == (3, 64, 32)


@pytest.mark.parametrize("case, match", [
    ("missing folder", r"--out=.*/missing/m\.jaxexport: no such folder .*/missing$"),
    ("unknown checkpoint", r"--checkpoint=newest: valid: best, latest$"),
    ("bad image size", r"--image_size=64: expected H,W"),
])
def test_bad_input_is_one_line_and_writes_nothing(random_model, tmp_path, case, match):
  config, _, _, workdir = random_model
  out = tmp_path / ("missing" if case == "missing folder" else "") / "m.jaxexport"
  kwargs = {"unknown checkpoint": dict(which="newest"),
            "bad image size": dict(image_size="64")}.get(case, {})
  with pytest.raises(SystemExit) as e:
    errors.as_messages(lambda argv: exporting.export_model(config, workdir, str(out),
                                                           **kwargs), [])
  line = str(e.value.code)
  assert line.startswith("error: ") and "\n" not in line, line
  assert re.search(match, line), line
  assert os.listdir(tmp_path) == []


def test_the_command_refuses_an_unknown_checkpoint_in_one_line(random_model, tmp_path):
  config, _, _, workdir = random_model
  done = subprocess.run(
      [sys.executable, "-m", "fcnjax.commands.export", "--config=fcn8s_shapes",
       f"--config.data.data_dir={config.data.data_dir}", f"--workdir={workdir}",
       f"--out={tmp_path / 'm.jaxexport'}", "--checkpoint=newest"],
      capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
  assert done.stderr.strip().splitlines()[-1] == "error: --checkpoint=newest: valid: best, latest"
  assert os.listdir(tmp_path) == []
