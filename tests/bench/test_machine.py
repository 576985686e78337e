"""bench._machine.write_results: every bench's results file, and an earlier run of the day kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench._machine as machine


def test_a_second_run_of_the_day_gets_its_own_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "RESULTS", tmp_path / "results")
    first = machine.write_results("share_http", {"run": 1}, suffix="-w2")
    second = machine.write_results("share_http", {"run": 2}, suffix="-w2")
    assert first != second
    assert first.name.startswith("share_http-") and first.name.endswith("-w2.json")
    assert len(first.stem) == len("share_http-YYYY-MM-DD-w2")
    assert len(second.stem) == len("share_http-YYYY-MM-DD-HHMM-w2")
    assert json.loads(first.read_text()) == {"run": 1}
    assert json.loads(second.read_text()) == {"run": 2}
