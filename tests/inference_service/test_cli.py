"""The commands' argument checks, before anything is opened."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from inference_service.cli import app, dataset_app, forget_app

runner = CliRunner()
# Mounted the way ops.cli mounts SERVICE_COMMANDS.
root = typer.Typer()
root.add_typer(app, name="inference")
root.add_typer(dataset_app, name="dataset")
root.add_typer(forget_app, name="forget")


def text(output: str) -> str:
    """The error panel's words, without its box and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_forget_needs_exactly_one_identity() -> None:
    neither = runner.invoke(root, ["forget"])
    both = runner.invoke(root, ["forget", "--anonymous-id", "a", "--user-id", "u"])
    assert neither.exit_code == 2 and "exactly one of --anonymous-id and --user-id" in text(neither.output)
    assert both.exit_code == 2


def test_export_refuses_a_bad_range_naming_the_option() -> None:
    reversed_range = runner.invoke(root, ["dataset", "export", "--from", "2026-02-01", "--to", "2026-01-01"])
    bad_day = runner.invoke(root, ["dataset", "export", "--from", "2026-13-01", "--to", "2026-12-01"])
    assert reversed_range.exit_code == 2 and "is before --from" in text(reversed_range.output)
    assert bad_day.exit_code == 2 and "--from" in text(bad_day.output) and "YYYY-MM-DD" in text(bad_day.output)


def test_inference_group_lists_serve() -> None:
    result = runner.invoke(root, ["inference", "--help"])
    assert result.exit_code == 0 and "serve" in result.output and "models" in result.output
