"""What a study is: one module's arms, contrasts, base config and scored splits.

A study module (fcnjax/studies/upsampling.py, skip.py, ...) defines
`get_config()` (its base config: the module is also its config file) and
`STUDY = Study(...)`; `studies.registry.STUDIES` maps a name to it, so a new
study is one module plus one line there, and `fcnjax-study NAME` and its
pilot read nothing else.

  arms: {label: {dotted config field: value}}; an arm swaps a registered
    component (operator, family, loss, dataset) by setting the field that
    names it, e.g. {'model.upsample': 'carafe'}.
  contrasts(labels) -> {name: (weights {arm: w}, 'A', 'B')}: the pre-registered
    contrasts over the arms that run (`fcnjax.stats.compare`); `declared`
    gives each contrast's registration date (ISO), recorded with the results.
  default_arms: the arms run when --arms is not given (None: all).
  scored_splits: scored once per run with the final weights; the first is
    the test split the contrasts use.
  published: {arm: a published figure} quoted beside the arm's costs (the
    module says where it comes from).
"""
import dataclasses
from typing import Callable, Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  config_file: str  # the study module's path: its get_config() is the base config
  arms: Mapping[str, Mapping]
  contrasts: Callable[[Tuple[str, ...]], Mapping]
  declared: Mapping[str, str]
  default_arms: Optional[Tuple[str, ...]] = None
  scored_splits: Tuple[str, ...] = ("test", "train")
  seeds: int = 5
  summary: str = ""
  published: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def select(self, names=None):
    """{label: fields} of `names` (default: default_arms or all); ValueError naming
    the unknown ones."""
    names = list(names or self.default_arms or self.arms)
    unknown = sorted(set(names) - set(self.arms))
    if unknown:
      raise ValueError(f"--arms: unknown {unknown} for study {self.name!r}; valid: "
                       f"{list(self.arms)}")
    return {a: dict(self.arms[a]) for a in names}

  def contrasts_for(self, labels):
    """The pre-registered contrasts whose arms all run, each with its date."""
    out = {}
    for name, (weights, a, b) in self.contrasts(tuple(labels)).items():
      if set(weights) <= set(labels):
        if name not in self.declared:
          raise ValueError(f"study {self.name!r}: contrast {name!r} has no declared date")
        out[name] = (weights, a, b)
    return out
