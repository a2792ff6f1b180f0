"""Every DVC stage depends on the d2v code it can run, and on no more: its `deps` in dvc.yaml
cover the static import closure of its command (function-level imports included, `if
TYPE_CHECKING:` blocks not, as they never run; a `resolve(modality, "<role>")` of d2v/registry.py
imports the role's modules of every modality), so editing report code leaves every trained model
up to date. Pure `ast`: nothing is imported or run."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import yaml

from tests.helpers import REPO

PACKAGE = "d2v"


@functools.cache
def module_path(name: str, root: Path = REPO) -> Path | None:
    """The file of module `name` (`d2v.config` -> d2v/config/__init__.py); None if not d2v's."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: all but the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@functools.cache
def registry_roles(root: Path = REPO) -> dict[str, set[str]]:
    """d2v/registry.py's MODALITIES: role -> the modules its entries name (`module:function`)."""
    path = root / "d2v/registry.py"
    roles: dict[str, set[str]] = {}
    if not path.is_file():
        return roles
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModalityEntry":
            for kw in node.keywords:
                roles.setdefault(kw.arg, set()).add(ast.literal_eval(kw.value).partition(":")[0])
    return roles


def _resolved_role(node: ast.AST) -> str | None:
    """The role of a `resolve(modality, "<role>")` call (registry lookups), else None."""
    if not (isinstance(node, ast.Call) and len(node.args) == 2):
        return None
    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
    role = node.args[1]
    if name == "resolve" and isinstance(role, ast.Constant) and isinstance(role.value, str):
        return role.value
    return None


@functools.cache
def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """The d2v modules `path` imports anywhere (module, class or function level), with the
    packages each import runs (`import d2v.a.b` runs d2v/__init__, d2v/a/__init__, d2v/a/b)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif (role := _resolved_role(node)) is not None:
            names.update(registry_roles(root)[role])
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if module_path(prefix, root) is not None:
                found.add(prefix)
    return found


@functools.cache
def import_closure(start: Path, root: Path = REPO) -> frozenset[Path]:
    """The d2v files (relative to root) that running `start` can import."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, root):
            todo.append(module_path(name, root))
    return frozenset(p.relative_to(root) for p in seen)


def module_closure(name: str, root: Path = REPO) -> set[Path]:
    """What `importlib.import_module(name)` can import: its packages, itself, and theirs."""
    parts = name.split(".")
    found: set[Path] = set()
    for i in range(1, len(parts) + 1):
        found |= import_closure(module_path(".".join(parts[:i]), root), root)
    return found


def runs_nothing(path: Path) -> bool:
    """A module of at most a docstring (an empty package `__init__`)."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in body)


def cli_commands(root: Path = REPO) -> dict[str, str]:
    """`d2v.cli.COMMANDS`: each command's module, which the CLI imports only for that command."""
    tree = ast.parse((root / "d2v/cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("d2v/cli.py has no COMMANDS table")


# what every stage script imports: it runs `d2v.cli.main([<command>, ...])`
ENTRY = Path("stages/_entry.py")


def stage_command(script: Path) -> str:
    """The d2v command a stage script runs: the argument of its `stage("<command>")` call."""
    for node in ast.walk(ast.parse(script.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "stage"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    raise AssertionError(f"{script} calls no stage(<command>)")


def stages(root: Path = REPO) -> dict[str, dict]:
    """dvc.yaml's stages by name; a `foreach` stage by its name, with its `do` body."""
    raw = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return {name: body.get("do", body) for name, body in raw.items()}


def code_closure(body: dict, root: Path = REPO) -> set[Path]:
    """The files a stage's command can run: its script's imports and its command's module."""
    script = root / next(w for w in body["cmd"].split() if w.startswith("stages/"))
    module = cli_commands(root)[stage_command(script)]
    files = import_closure(root / ENTRY, root) | module_closure(module, root)
    files |= import_closure(script, root)
    return {f for f in files if not (f.name == "__init__.py" and runs_nothing(root / f))}


def code_deps(body: dict) -> list[str]:
    return [d for d in body["deps"] if d.split("/")[0] in ("d2v", "stages")]


def covers(dep: str, file: Path) -> bool:
    return file == Path(dep) or Path(dep) in file.parents


def test_every_stage_depends_on_the_code_it_runs_and_no_more() -> None:
    problems = []
    for name, body in stages().items():
        files, deps = code_closure(body), code_deps(body)
        missing = sorted(str(f) for f in files if not any(covers(d, f) for d in deps))
        unused = [d for d in deps if not any(covers(d, f) for f in files)]
        if missing:
            problems.append(f"{name}: add to deps: {', '.join(missing)}")
        if unused:
            problems.append(f"{name}: deps it never imports: {', '.join(unused)}")
    assert not problems, "\n".join(problems)


def test_only_the_report_depends_on_report_code() -> None:
    report_file = Path("d2v/report/build.py")
    for name, body in stages().items():
        touching = [d for d in code_deps(body) if covers(d, report_file)]
        assert bool(touching) == (name == "report"), (name, touching)


def test_closure_follows_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""docs only"""\n')
    (pkg / "sub/__init__.py").write_text("")
    (pkg / "sub/a.py").write_text("def f():\n    from . import b\n")
    (pkg / "sub/b.py").write_text("from d2v import c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from d2v import d\n"
    )
    (pkg / "d.py").write_text("")
    got = {str(p) for p in module_closure("d2v.sub.a", tmp_path)}
    assert got == {
        "d2v/__init__.py",
        "d2v/sub/__init__.py",
        "d2v/sub/a.py",
        "d2v/sub/b.py",
        "d2v/c.py",
    }


def test_closure_follows_registry_lookups_of_the_role_only(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "registry.py").write_text(
        'E = {1: ModalityEntry(download="d2v.dl:f", prepare="d2v.prep:g")}\n'
    )
    (pkg / "stage.py").write_text('from d2v.registry import resolve\nresolve(m, "prepare")\n')
    (pkg / "dl.py").write_text("")
    (pkg / "prep.py").write_text("")
    got = {str(p) for p in module_closure("d2v.stage", tmp_path)}
    assert got == {"d2v/__init__.py", "d2v/stage.py", "d2v/registry.py", "d2v/prep.py"}
