"""The README's layout section matches the tree: every module it names exists, and every module
under cli/, ui/, workbench/ and engine/ is named (by its file name, or by a glob such as `*_tab.py`);
and imports point one way, cli -> ui -> workbench -> engine.

The section is the code block under "## Layout". Each line is `<indent><names>  <description>`:
names are comma-separated file names (`a.py, b.py`), globs (`*_tab.py`) or one package (`store/`),
separated from the description by two or more spaces; two spaces of indent per package level.
`__init__.py` files need no line of their own (a package line stands for them).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "ui", "workbench", "engine")  # top layer first: each imports only those after it
_NAMES = re.compile(r"^(?P<indent> *)(?P<names>[\w*.]+/?(?:, [\w*.]+/?)*)(?:\s{2,}|$)")


def layout_block(readme: str) -> list[str]:
    """The lines of the code block under '## Layout'."""
    section = readme.split("\n## Layout", 1)[1]
    return section.split("```", 2)[1].splitlines()[1:]


def layout_entries(lines: list[str]) -> tuple[set[str], set[str], list[str]]:
    """(named files and globs as paths from the root, named packages, unreadable lines)."""
    files, packages, unreadable, stack = set(), set(), [], []
    for line in lines:
        if not line.strip():
            continue
        found = _NAMES.match(line)
        if not found:
            unreadable.append(line)
            continue
        depth = len(found["indent"]) // 2
        stack = stack[:depth]
        parent = "/".join(stack)
        for name in found["names"].split(", "):
            path = f"{parent}/{name}" if parent else name
            if name.endswith("/"):
                packages.add(path.rstrip("/"))
                stack.append(name.rstrip("/"))
            else:
                files.add(path)
    return files, packages, unreadable


def tree_modules() -> set[str]:
    """Every module under the layout's packages, as paths from the root (no `__init__.py`)."""
    return {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts and p.name != "__init__.py"}


def test_layout_section_matches_the_tree():
    files, packages, unreadable = layout_entries(layout_block((ROOT / "README.md").read_text()))
    assert not unreadable, f"README layout lines that are not `NAMES  description`: {unreadable}"
    globs = {f for f in files if "*" in f}
    missing_files = sorted(f for f in files - globs if f.split("/")[0] in PACKAGES and not (ROOT / f).is_file())
    missing_packages = sorted(p for p in packages if p.split("/")[0] in PACKAGES and not (ROOT / p).is_dir())
    unmatched_globs = sorted(g for g in globs if not fnmatch.filter(tree_modules(), g))
    unnamed = sorted(m for m in tree_modules()
                     if m not in files and not any(fnmatch.fnmatch(m, g) for g in globs))
    problems = [f"{what}: {names}" for what, names in (
        ("the README's layout names modules that do not exist", missing_files),
        ("the README's layout names packages that do not exist", missing_packages),
        ("the README's layout has globs that match no module", unmatched_globs),
        ("modules missing from the README's layout (add a line `NAME.py  what it does` under its package)",
         unnamed)) if names]
    assert not problems, "\n".join(problems)


def test_layout_parser_reads_packages_groups_and_globs():
    lines = ["engine/          torch", "  a.py, b.py     two", "workbench/       store", "  store/         sql",
             "    queries/     per concern", "      x.py       one", "  c.py           back up", "ui/", "  *_tab.py  tabs"]
    files, packages, unreadable = layout_entries(lines)
    assert files == {"engine/a.py", "engine/b.py", "workbench/store/queries/x.py", "workbench/c.py", "ui/*_tab.py"}
    assert packages == {"engine", "workbench", "workbench/store", "workbench/store/queries", "ui"}
    assert unreadable == []


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def layer_violations(root: Path) -> list[str]:
    """'module imports X' for every import of a layer above the module's own."""
    found = []
    for rank, package in enumerate(PACKAGES):
        above = set(PACKAGES[:rank])
        for path in sorted((root / package).rglob("*.py")):
            relative = str(path.relative_to(root))
            if relative == "workbench/__main__.py":
                continue  # `python -m workbench` hands over to the CLI: the one stated exception
            found += [f"{relative} imports {name}" for name in sorted(imported_packages(path) & above)]
    return found


def test_imports_point_down_the_layers():
    assert layer_violations(ROOT) == []


def test_a_layer_importing_upwards_is_found(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "engine" / "bad.py").write_text("def f():\n    from workbench.store import Store\n")
    (tmp_path / "ui" / "ok.py").write_text("import workbench.store\nfrom engine import errors\n")
    (tmp_path / "workbench" / "worse.py").write_text("import cli.rm\n")
    assert layer_violations(tmp_path) == ["workbench/worse.py imports cli", "engine/bad.py imports workbench"]
