"""`make dev` points its Prometheus at every service that runs (file-based targets), labelled as the
rules expect: service and pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange_devtools import dev_stack


def test_every_started_service_is_a_target_and_the_others_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dev_stack, "STATE", tmp_path)
    monkeypatch.delenv(dev_stack.PORT_BASE_VAR, raising=False)
    dev_stack._scrape_targets(["ingest", "relay", "normalizer"], dev_stack.port_plan())
    targets = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "prometheus" / "targets").glob("*.json")}
    assert set(targets) == {*dev_stack.SERVICES, "kafka", "postgres"}
    assert targets["ingest"] == [{"targets": ["127.0.0.1:8080"], "labels": {"service": "ingest", "pipeline": "dev"}}]
    assert targets["relay"][0]["targets"] == ["127.0.0.1:9103"]
    assert targets["normalizer"][0]["targets"] == ["127.0.0.1:9102"]
    assert targets["query"] == [] and targets["tokenizer"] == []
    assert targets["kafka"][0]["targets"] == ["127.0.0.1:9308"]
    assert targets["postgres"][0]["targets"] == ["127.0.0.1:9187"]
