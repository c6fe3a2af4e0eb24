"""The ports of `make dev`: chosen once and recorded in `.dev/ports.json`, so a process started
again after a crash comes back where the others expect it (the crash itself:
tests/integration/devtools/test_dev_stack_recovery.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange_devtools import dev_stack
from exchange_devtools.engines.base import EngineError


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(dev_stack, "STATE", tmp_path)
    monkeypatch.delenv(dev_stack.PORT_BASE_VAR, raising=False)
    return tmp_path


def test_the_usual_ports_and_free_ones_for_the_engines_are_recorded_and_kept(state: Path) -> None:
    plan = dev_stack.port_plan()
    assert (plan["ingest"], plan["prometheus"], plan["jaeger-query"]) == (8080, 9090, 16686)
    assert len(set(plan.values())) == len(dev_stack.PORTS)
    assert json.loads((state / "ports.json").read_text()) == plan
    assert dev_stack.port_plan() == plan  # the engines' free ports too


def test_a_port_base_numbers_every_port_from_it(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dev_stack.PORT_BASE_VAR, "21000")
    assert sorted(dev_stack.port_plan().values()) == list(range(21000, 21000 + len(dev_stack.PORTS)))


def test_recorded_ports_win_over_a_later_port_base(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (state / "ports.json").write_text(json.dumps({"s3": 23456}))
    monkeypatch.setenv(dev_stack.PORT_BASE_VAR, "21000")
    plan = dev_stack.port_plan()
    assert plan["s3"] == 23456 and plan["ingest"] == 21000


def test_a_dev_dir_from_before_ports_json_keeps_its_engines_ports(state: Path) -> None:
    (state / "postgres").mkdir()
    (state / "postgres" / "port").write_text("41001")
    (state / "s3").mkdir()
    (state / "s3" / "port").write_text("41002\n")
    (state / "kafka").mkdir()
    (state / "kafka" / "server.properties").write_text(
        "# Written by exchange_devtools.engines.kafka\n"
        "controller.quorum.voters=1@127.0.0.1:41004\nadvertised.listeners=PLAINTEXT://127.0.0.1:41003\n"
    )
    plan = dev_stack.port_plan()
    assert [plan[name] for name in ("postgres", "s3", "kafka", "kafka-controller")] == [41001, 41002, 41003, 41004]


@pytest.mark.parametrize("base", ["abc", "80", "65530"])
def test_a_port_base_out_of_range_is_one_line(state: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv(dev_stack.PORT_BASE_VAR, base)
    with pytest.raises(EngineError, match=f"^{dev_stack.PORT_BASE_VAR}='{base}': expected a port from 1024 to"):
        dev_stack.port_plan()


@pytest.mark.parametrize("text", ["{", "[]", '{"s3": "x"}'])
def test_a_broken_ports_file_is_one_line(state: Path, text: str) -> None:
    (state / "ports.json").write_text(text)
    with pytest.raises(EngineError, match=r"ports\.json: not a JSON object of port numbers; fix or delete it$"):
        dev_stack.port_plan()
