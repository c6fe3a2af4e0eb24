"""The platform's Prometheus rules and Grafana dashboards, built from code into the chart's files.

`python -m exchange_devtools monitoring` (`make monitoring`) writes them; tests fail when the
committed files differ from what the code builds, and run them against a real Prometheus.
"""

from __future__ import annotations

from pathlib import Path

from exchange_devtools.engines.base import REPO_ROOT

FILES = REPO_ROOT / "charts" / "exchange-operator" / "files"
RULES_FILE = FILES / "prometheus" / "exchange-rules.yaml"
DASHBOARDS_DIR = FILES / "dashboards"


def generated() -> dict[Path, str]:
    """Every generated file and its content."""
    from exchange_devtools.monitoring import dashboards, rules

    out = {RULES_FILE: rules.render()}
    for name, text in dashboards.render_all().items():
        out[DASHBOARDS_DIR / f"{name}.json"] = text
    return out


def main(argv: list[str]) -> int:
    """Write the generated files; remove dashboards no longer built."""
    files = generated()
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in set(DASHBOARDS_DIR.glob("*.json")) - set(files):
        stale.unlink()
        print(f"removed {stale.relative_to(REPO_ROOT)}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0
