from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_processors.cli import dims_app
from stream_processors.dimensions import SEED_FILE, DimensionStore, apply_all, read_dimension_file
from stream_processors.enrich import UserAgentParser
from stream_processors.errors import DimensionFileError
from tests.helpers.stamped_events import T0


def test_the_seed_file_holds_the_design_dimensions() -> None:
    store = DimensionStore()
    apply_all(store, read_dimension_file(SEED_FILE, T0))
    assert {(v.name, v.type) for v in store.tools.values()} == {
        ("rectangle", "manual"),
        ("brush", "manual"),
        ("segmentation", "ai_assist"),
    }
    assert {(v.name, v.type) for v in store.inferences.values()} == {
        ("remove_object", "inpainting"),
        ("enhance", "super_resolution"),
        ("deblur", "deblurring"),
    }


def test_a_bad_file_names_every_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "dims.json"
    path.write_text(
        json.dumps(
            {
                "tools": [{"tool_id": 1, "tool_name": "a", "tool_type": "manual"}, {"tool_id": 1, "tool_name": "b"}],
                "inferences": [{"inference_id": 0, "inference_name": "x", "inference_type": "y"}],
                "colours": [],
            }
        )
    )
    with pytest.raises(DimensionFileError) as caught:
        read_dimension_file(path, T0)
    fields = {error.field for error in caught.value.errors}
    assert fields == {"colours", "tools[1].tool_type", "inferences[0].inference_id"}


def test_dims_load_refuses_a_bad_file_before_publishing(tmp_path: Path) -> None:
    path = tmp_path / "dims.json"
    path.write_text('{"tools": [{"tool_id": "x"}]}')
    result = CliRunner().invoke(dims_app, ["load", str(path)], env={"FS_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    assert result.exit_code == 2
    assert "tools[0].tool_id" in result.output


def test_tombstones_and_bad_records_on_the_topic() -> None:
    store = DimensionStore()
    apply_all(store, read_dimension_file(SEED_FILE, T0))
    store.apply_tool(b"2", None)
    store.apply_tool(b"9", b'{"tool_id": "nine"}')
    assert sorted(store.tools) == [1, 3] and store.rejected == 1


def test_user_agents_are_parsed_once() -> None:
    parser = UserAgentParser(cache_size=10)
    agent = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    )
    first = parser.parse(agent)
    assert first is not None and first.os == "iOS" and first.device == "iPhone" and not first.is_bot
    assert parser.parse(agent) is first
    assert parser.parse(None) is None


def test_the_project_cli_mounts_both_groups() -> None:
    from ops.cli import SERVICE_COMMANDS

    assert ("stream_processors.cli", "app", "stream") in SERVICE_COMMANDS
    assert ("stream_processors.cli", "dims_app", "dims") in SERVICE_COMMANDS
