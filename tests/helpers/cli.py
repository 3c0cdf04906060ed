"""Reading what a typer command printed, for the commands' argument checks."""

from __future__ import annotations

import re


def panel_text(output: str) -> str:
    """The error panel's words, without its box and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())
