"""The inference command group, mounted the way ops.cli mounts it."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from inference_service.cli import app

runner = CliRunner()
root = typer.Typer()
root.add_typer(app, name="inference")


def test_inference_group_lists_serve() -> None:
    result = runner.invoke(root, ["inference", "--help"])
    assert result.exit_code == 0 and "serve" in result.output and "models" in result.output
