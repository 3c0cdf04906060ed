"""The layer contract in pyproject.toml refuses an upward import: planted in a copy of the tree, lint-imports fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("funnelstream", "ingest", "stream_processors", "clickhouse", "inference_service", "infra", "ops")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports_on_a_copy(tmp_path: Path, plant: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.sql"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in plant.items():
        with (tmp_path / module).open("a") as source:
            source.write(f"\n{line}  # planted\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "line", "refusal"),
    [
        ("funnelstream/clock.py", "import ingest.app", "funnelstream.clock -> ingest.app"),
        ("funnelstream/topics.py", "from ops import demo", "funnelstream.topics -> ops.demo"),
        ("clickhouse/queries.py", "import ops.cli", "clickhouse.queries -> ops.cli"),
        ("ingest/web.py", "import clickhouse.backend", "ingest.web -> clickhouse.backend"),
        ("infra/stack.py", "import stream_processors.app", "infra.stack -> stream_processors.app"),
    ],
    ids=["ground-to-service", "ground-to-ops", "service-to-ops", "service-to-service", "infra-to-service"],
)
def test_an_upward_import_fails_the_layer_contract(tmp_path: Path, module: str, line: str, refusal: str) -> None:
    result = lint_imports_on_a_copy(tmp_path, {module: line})
    assert result.returncode != 0
    assert refusal in result.stdout, result.stdout[-2000:]


def test_an_import_hidden_inside_a_function_counts_too(tmp_path: Path) -> None:
    result = lint_imports_on_a_copy(tmp_path, {"ingest/web.py": "def _later():\n    import ops.load  # noqa: PLC0415"})
    assert result.returncode != 0
    assert "ingest.web -> ops.load" in result.stdout
