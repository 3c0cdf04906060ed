"""The test suite's own layout: shared helpers live in tests/helpers, and no test module imports another or a conftest.

A module under tests/ is a test module (``test_*.py``), a ``conftest.py``, a package ``__init__.py``, or
a helper in tests/helpers/. Every import of a ``tests.*`` module, relative ones and ``pytest_plugins``
included, names tests.helpers; so a test can be read, moved or deleted without breaking another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HELPERS = "tests.helpers"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at any depth, and of every pytest plugin."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from <package> import name`` may import the module <package>.name.
            is_package = (root.parent / base.replace(".", "/")).is_dir()
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if is_package else base
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytest_plugins" for target in node.targets
        ):
            for element in ast.walk(node.value):
                if isinstance(element, ast.Constant) and isinstance(element.value, str):
                    yield node.lineno, element.value


def _is_helper(name: str) -> bool:
    return name == HELPERS or name.startswith(HELPERS + ".")


def layout_violations(root: Path) -> list[str]:
    """Every module under ``root`` (a tests/ folder) that is out of place or imports a test module or conftest."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).as_posix()
        kind_ok = path.name.startswith("test_") or path.name in {"conftest.py", "__init__.py"}
        if not kind_ok and not _is_helper(_module_name(path, root)):
            found.append(f"{relative}: a helper outside tests/helpers (move it there)")
        for line, target in sorted(set(_imported(path, root))):
            if (target == "tests" or target.startswith("tests.")) and not _is_helper(target):
                found.append(f"{relative}:{line}: imports {target}; share it through tests/helpers instead")
    return found


def test_tests_import_only_helpers_from_the_suite() -> None:
    assert layout_violations(TESTS) == []


def test_a_planted_import_of_a_test_module_or_conftest_is_found(tmp_path: Path) -> None:
    root = tmp_path / "tests"
    files = {
        "__init__.py": "",
        "conftest.py": 'pytest_plugins = ["tests.helpers.fixtures", "tests.unit.test_b"]\n',
        "helpers/__init__.py": "",
        "helpers/fixtures.py": "from tests.unit import test_b\n",
        "unit/__init__.py": "",
        "unit/conftest.py": "from tests.helpers.fixtures import x\n",
        "unit/test_a.py": (
            "from tests.helpers import fixtures\n"
            "from .conftest import x\n"
            "from . import test_b\n"
            "def test_a():\n"
            "    from tests.unit.test_b import y\n"
        ),
        "unit/test_b.py": "import tests.unit.conftest\n",
        "unit/shared.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert layout_violations(root) == [
        "tests/conftest.py:1: imports tests.unit.test_b; share it through tests/helpers instead",
        "tests/helpers/fixtures.py:1: imports tests.unit.test_b; share it through tests/helpers instead",
        "tests/unit/shared.py: a helper outside tests/helpers (move it there)",
        "tests/unit/test_a.py:2: imports tests.unit.conftest; share it through tests/helpers instead",
        "tests/unit/test_a.py:3: imports tests.unit.test_b; share it through tests/helpers instead",
        "tests/unit/test_a.py:5: imports tests.unit.test_b; share it through tests/helpers instead",
        "tests/unit/test_b.py:1: imports tests.unit.conftest; share it through tests/helpers instead",
    ]
