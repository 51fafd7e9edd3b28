"""Every family x every registered operator: built and run (shapes traced with
`jax.eval_shape`) where the family's structure allows it, refused by name where
it does not; every operator trained two steps in the decoder; the protocol's
declarations (needs, kind) read from the registry."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fcnjax import models
from fcnjax.models import operator
from fcnjax.train import loop
from test_train import tiny_config

FAMILIES = {
    "fcn": dict(name="fcn", variant="8s"),
    "segnet": dict(name="segnet", depth=3),
    "deconvnet": dict(name="deconvnet", depth=3),
    "decoder": dict(name="decoder", depth=3),
    "decoder_skips": dict(name="decoder", depth=3, skips=True),
    "unet": dict(name="unet"),
}
# (family, operator) -> the reason it is refused; every other pair must run.
REFUSED = {
    ("fcn", "fade"): "is guided", ("fcn", "sapa"): "is guided",
    ("fcn", "indexnet_depthwise"): "depthwise index",
    # FCN's final x8 step upsamples 4 class-score channels: not divisible by 8^2.
    ("fcn", "dysample-s"): "style 'pl' needs channels divisible",
    ("fcn", "dysample-s+"): "style 'pl' needs channels divisible",
}
CLASSES = 4


def _forward_shape(model, x):
  return jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x)).shape


@pytest.mark.parametrize("op", list(models.UPSAMPLERS))
def test_every_family_takes_every_operator_its_structure_allows(op):
  x = jnp.zeros((1, 32, 40, 3))
  for fam, cfg in FAMILIES.items():
    reason = REFUSED.get((fam, op))
    if reason:
      with pytest.raises(ValueError, match=reason):
        _forward_shape(models.build_model(dict(cfg, backbone="tiny", upsample=op), CLASSES), x)
    else:
      model = models.build_model(dict(cfg, backbone="tiny", upsample=op), CLASSES)
      assert _forward_shape(model, x) == (1, 32, 40, CLASSES), (fam, op)


def test_refusals_name_what_is_missing():
  for op, what in (("indexnet", "no 2x2 pools to index"), ("fade", "no stride-1 map"),
                   ("max_unpool", "records no pooling switches")):
    with pytest.raises(ValueError, match=what):
      models.build_model(dict(name="unet", backbone="resnet18", upsample=op), CLASSES)
  with pytest.raises(ValueError, match=r"config.model.upsample='cubic'; valid"):
    models.build_model(dict(name="decoder", backbone="tiny", upsample="cubic"), CLASSES)
  with pytest.raises(ValueError, match=r"upsample_options: \['width'\] not options of "
                     r"upsample='carafe'; its options: \('compressed', 'k_enc', 'k_up'\)"):
    models.build_model(dict(name="decoder", backbone="tiny", upsample="carafe",
                            upsample_options={"width": 3}), CLASSES)
  with pytest.raises(ValueError, match=r"upsample='dysample': style='ps'; valid"):
    models.build_model(dict(name="decoder", backbone="tiny", upsample="dysample",
                            upsample_options={"style": "ps"}), CLASSES)


def test_options_reach_the_operator():
  model = models.build_model(dict(name="decoder", backbone="tiny", depth=2, upsample="carafe",
                                  upsample_options={"compressed": 4, "k_up": 3}), CLASSES)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
  assert params["up2"]["compressor"]["kernel"].shape == (1, 1, 16, 4)
  assert params["up2"]["encoder"]["kernel"].shape == (3, 3, 4, 4 * 9)  # f^2 k_up^2


def test_the_registry_declares_needs_and_kind():
  """Kinds by definition: bed of nails and max-unpooling leave zeros (sparse); the
  parameter-free ones have no parameters in a decoder stage; guided ones need the
  encoder's map at the output stride."""
  x = jnp.zeros((1, 8, 8, 4))
  for name in models.UPSAMPLERS:
    op = models.resolve(name)
    assert op.needs in operator.NEEDS
    given = {"nothing": None, "switches": jnp.zeros((1, 8, 8, 4), jnp.uint8),
             "index": jnp.ones((1, 16, 16, 1)), "guidance": jnp.ones((1, 16, 16, 4))}[op.needs]
    variables = jax.eval_shape(lambda g: op(2).init(jax.random.key(0), x, g, (16, 16)), given)
    if op.needs != "index":  # IndexNet learns in the encoder's index blocks
      assert bool(variables.get("params")) == op.learned, name
    if not op.learned:
      y = op(2).apply({}, jnp.ones((1, 8, 8, 4)), given, (16, 16))
      assert (np.asarray(y) == 0).any() == (not op.dense), name
  assert {n for n in models.UPSAMPLERS if not models.resolve(n).dense} == {
      "bed_of_nails", "max_unpool"}
  assert {n for n in models.UPSAMPLERS if models.resolve(n).guided} == {"fade", "sapa"}


def _train_two_steps(op):
  model = models.build_model(dict(name="decoder", backbone="tiny", depth=2, skips=True,
                                  upsample=op), CLASSES)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, CLASSES, (2, 16, 16)))
  variables = model.init(jax.random.key(0), x)
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, stats, opt_state):
    def loss_fn(p):
      logits, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new["batch_stats"], opt_state, loss, grads

  params, stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)
  losses = []
  for _ in range(2):
    params, stats, opt_state, loss, grads = step(params, stats, opt_state)
    losses.append(float(loss))
  return variables["params"], params, grads, losses


@pytest.mark.parametrize("op", [n for n in models.UPSAMPLERS
                                if n not in models.LECTURE_UPSAMPLERS])
def test_every_modern_operator_trains_two_steps(op):
  """Finite losses; the operator's own parameters get gradients and change. (The
  lecture's operators train in the study and training tests.)"""
  before, after, grads, losses = _train_two_steps(op)
  assert np.isfinite(losses).all() and losses[1] != losses[0]
  ups = [k for k in before if k.startswith("up")]
  if op.startswith("indexnet"):  # its parameters live in the encoder's index blocks
    ups = [("backbone", k) for k in before["backbone"] if k.startswith("index_block")]
  leaves = lambda tree: [tree[k[0]][k[1]] if isinstance(k, tuple) else tree[k] for k in ups]  # noqa
  assert ups
  for g, a, b in zip(leaves(grads), leaves(before), leaves(after)):
    assert any(np.abs(np.asarray(v)).sum() > 0 for v in jax.tree.leaves(g)), op
    assert any(not np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_registered_variant_brings_its_own_option_defaults():
  """indexnet_depthwise's encoder blocks are depthwise (4 outputs per channel),
  holistic ones predict 4 values from all channels; an explicit option wins."""
  x = jnp.zeros((1, 16, 16, 3))
  def index_conv(op, **options):
    model = models.build_model(dict(name="decoder", backbone="tiny", depth=2, upsample=op,
                                    upsample_options=options), CLASSES)
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    return params["backbone"]["index_block1"]["index_conv"]["kernel"].shape
  assert index_conv("indexnet_depthwise") == (4, 4, 1, 4 * 8)  # tiny: 8 channels in stage 1
  assert index_conv("indexnet") == (4, 4, 8, 2 * 8)  # nonlinear holistic: to 2C first
  assert index_conv("indexnet", block="depthwise") == (4, 4, 1, 4 * 8)


@pytest.mark.parametrize("op", ["carafe", "sapa"])
def test_tap_loop_operators_train_under_the_shard_map_driver(op, tmp_path):
  """The default driver (jit + shard_map over 8 fake devices, check_vma) traces
  the tap loops of CARAFE's reassembly and SAPA's similarity."""
  config = tiny_config(tmp_path / "tfds", **{
      "model.name": "decoder", "model.backbone": "tiny", "model.depth": 2,
      "model.skips": True, "model.upsample": op, "num_train_steps": 2,
      "eval_every_steps": 2, "checkpoint_every_steps": 2, "parallel": "jit"})
  scores = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(scores["mean_iou"])
