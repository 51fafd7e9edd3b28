"""The import graph of the project's own modules (fcnjax/ and the scripts in
experiments/, which import one another by their bare names), read with `ast`:
every `import` and `from ... import`, those inside functions included, plus
the modules a registry names as strings (`data.pipeline.DATASETS`, imported
on first use), has no cycle; an import of the project's own modules sits at
the top of its file unless FUNCTION_LEVEL_ALLOWED says why it cannot."""
import ast
import collections
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "fcnjax"

# (importing module, imported module) -> why the import waits for its function.
# Only an optional third-party dependency the imported module needs at its
# top (not one of the project's required ones) is a reason; an entry point
# wanting to start fast is not.
FUNCTION_LEVEL_ALLOWED = {}

# The entry points are fcnjax/commands/*; the top-level names they had are
# aliases, each importing its command module and nothing else.
COMMANDS = "fcnjax.commands"
ALIASES = {"fcnjax.main": "fcnjax.commands.train", "fcnjax.evaluate": "fcnjax.commands.evaluate",
           "fcnjax.predict": "fcnjax.commands.predict", "fcnjax.ablate": "fcnjax.commands.ablate",
           "fcnjax.bench": "fcnjax.commands.bench", "fcnjax.convert": "fcnjax.commands.convert",
           "fcnjax.preview": "fcnjax.commands.preview",
           "fcnjax.export_main": "fcnjax.commands.export",
           "fcnjax.run_study": "fcnjax.commands.study"}

# kind: "top" (runs when the module is imported), "function" (inside a
# function body) or "by name" (a string constant that is exactly a project
# module's name, as in a registry that imports its entries on first use).
Import = collections.namedtuple("Import", "source path line target kind")


def _module_name(path):
  rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
  if rel[-1] == "__init__":
    rel = rel[:-1]
  return ".".join(rel)


def _files():
  """{module name: path} of fcnjax/**.py and experiments/*.py (by bare name)."""
  out = {}
  for root, _, names in os.walk(os.path.join(ROOT, PACKAGE)):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        out[_module_name(path)] = path
  experiments = os.path.join(ROOT, "experiments")
  for name in os.listdir(experiments):
    if name.endswith(".py"):
      out[name[:-len(".py")]] = os.path.join(experiments, name)
  return out


def _own(name, modules):
  """`name` if it is a project module, else its longest prefix that is; None outside."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def _targets(node, module, is_package, modules):
  """Project modules a statement imports: `from a.b import c` is a.b.c when c
  is a module, else a.b (whose __init__ runs)."""
  if isinstance(node, ast.Import):
    return [t for t in (_own(a.name, modules) for a in node.names) if t]
  base = module.split(".")
  if node.level:
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    name = ".".join(base + ([node.module] if node.module else []))
  else:
    name = node.module
  out = []
  for alias in node.names:
    target = _own(f"{name}.{alias.name}", modules) or _own(name, modules)
    if target and target not in out:
      out.append(target)
  return out


def _imports(module, path, modules):
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  out = []

  def add(node, target, kind):
    if target != module:
      out.append(Import(module, os.path.relpath(path, ROOT), node.lineno, target, kind))

  def visit(node, in_function):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      for target in _targets(node, module, is_package, modules):
        add(node, target, "function" if in_function else "top")
    elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
          and node.value.startswith(PACKAGE + ".") and node.value in modules):
      add(node, node.value, "by name")
    inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                              ast.Lambda))
    for child in ast.iter_child_nodes(node):
      visit(child, inside)

  visit(tree, False)
  return out


@pytest.fixture(scope="module")
def imports():
  modules = _files()
  return [i for m, p in sorted(modules.items()) for i in _imports(m, p, modules)]


def _cycles(imports):
  """Each set of modules that import one another in a circle (a strongly
  connected component of the graph), as the sorted list of its Imports."""
  edges = collections.defaultdict(list)
  for i in imports:
    edges[i.source].append(i)
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def connect(v):  # Tarjan
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for e in edges[v]:
      if e.target not in index:
        connect(e.target)
        low[v] = min(low[v], low[e.target])
      elif e.target in on_stack:
        low[v] = min(low[v], index[e.target])
    if low[v] == index[v]:
      component = set()
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.add(w)
        if w == v:
          break
      if len(component) > 1:
        components.append(component)

  for v in sorted(edges):
    if v not in index:
      connect(v)
  return sorted(sorted(i for i in imports if i.source in c and i.target in c)
                for c in components)


def _describe(i):
  where = {"top": "at the top", "function": "inside a function",
           "by name": "named in a registry"}[i.kind]
  return f"{i.source} -> {i.target} ({i.path}:{i.line}, {where})"


def test_the_walk_sees_every_kind_of_import(imports):
  pairs = {(i.source, i.target, i.kind) for i in imports}
  assert ("fcnjax.commands.train", "fcnjax.runtime.cli", "top") in pairs
  assert ("fcnjax.data.pipeline", "fcnjax.data.shapes", "by name") in pairs
  assert ("fcnjax.metrics", "fcnjax.data.palette", "top") in pairs  # from a.b import name
  assert ("fcnjax.train.checkpoint", "fcnjax.train.lock", "top") in pairs  # from a import b
  assert ("fcnjax.runtime.cli", "fcnjax.runtime", "top") not in pairs  # no parent edges
  tree = ast.parse("import fcnjax.viz\ndef f():\n  from fcnjax import metrics\n")
  modules = {"fcnjax.viz": "", "fcnjax.metrics": "", "fcnjax.x": ""}
  found = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      found += _targets(node, "fcnjax.x", False, modules)
  assert found == ["fcnjax.viz", "fcnjax.metrics"]


def test_the_cycle_finder_names_each_edge():
  imp = lambda s, t, line: Import(s, s + ".py", line, t, "top")
  edges = [imp("a", "b", 1), imp("b", "c", 2), imp("c", "a", 3), imp("c", "d", 4),
           imp("d", "e", 5), imp("e", "d", 6)]
  assert [[e.line for e in c] for c in _cycles(edges)] == [[1, 2, 3], [5, 6]]


def test_no_import_cycle(imports):
  cycles = _cycles(imports)
  assert not cycles, "import cycles between the project's modules:\n" + "\n".join(
      "  " + ", ".join(sorted({e.source for e in cycle})) + " import one another:\n"
      + "\n".join("    " + _describe(e) for e in cycle) for cycle in cycles)


def test_own_modules_are_imported_at_the_top(imports):
  late = [i for i in imports
          if i.kind == "function" and (i.source, i.target) not in FUNCTION_LEVEL_ALLOWED]
  assert not late, ("imports of the project's own modules inside functions (move them to "
                    "the top of the file, or add the pair to FUNCTION_LEVEL_ALLOWED with "
                    "the reason):\n" + "\n".join("  " + _describe(i) for i in late))


def test_the_allowlist_is_current(imports):
  used = {(i.source, i.target) for i in imports if i.kind == "function"}
  stale = sorted(set(FUNCTION_LEVEL_ALLOWED) - used)
  assert not stale, f"FUNCTION_LEVEL_ALLOWED entries no import needs any more: {stale}"


def test_nothing_but_an_alias_or_a_script_imports_an_entry_point(imports):
  """Libraries never import an entry point, nor one entry point another; an
  alias imports its own command only; the scripts in experiments/ (bare
  names) are entry points themselves and may run a command."""
  command = lambda name: name.startswith(COMMANDS + ".")
  wrong = [i for i in imports if command(i.target) and ALIASES.get(i.source) != i.target
           and i.source.startswith(PACKAGE + ".")]
  wrong += [i for i in imports if i.source in ALIASES and i.target != ALIASES[i.source]]
  assert not wrong, "imports of an entry point (fcnjax/commands/) outside its alias:\n" + (
      "\n".join("  " + _describe(i) for i in wrong))
  aliased = {i.source for i in imports if i.source in ALIASES}
  assert aliased == set(ALIASES)  # every alias exists and imports its command
