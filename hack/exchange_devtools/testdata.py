"""Where the shared test data lives: `../shared/data` beside the repository (as laid out for
developers and CI), or `$EXCHANGE_SHARED_DATA`. Tests that need it fail when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

from exchange_devtools.engines.base import REPO_ROOT

SHARED_DATA = Path(os.environ.get("EXCHANGE_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
FHIR_DIR = SHARED_DATA / "fhir"
SYNTHEA_DIR = FHIR_DIR / "synthea-10-patients"


def synthea(resource: str) -> Path:
    """The Synthea NDJSON file of one resource type; FileNotFoundError (one line) when absent."""
    path = SYNTHEA_DIR / f"{resource}.ndjson"
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path} (set EXCHANGE_SHARED_DATA to the shared/data folder)")
    return path
