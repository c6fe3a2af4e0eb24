"""Each image's dependency set is enough to run its code and holds nothing of the other's.

A venv gets exactly what the image's builder stage installs (`hack/docker/runtime_lock.py --extra
<name>`, hash-checked, no resolver), the code goes on PYTHONPATH as in the image, and every module
of the image's package is imported in a fresh interpreter. uv installs offline from its cache
(filled by `make deps`, which installs the same lock), so this takes seconds and builds no image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange_devtools.engines.base import CACHE_DIR

REPO = Path(__file__).resolve().parents[3]
UV = CACHE_DIR / "tools" / "uv-0.13.8" / "bin" / "uv"  # the version hack/install/python.sh pins

# Imports every module of a package; prints the ones that fail and which other-side packages exist.
IMPORT_ALL = """
import importlib, importlib.util, pkgutil, sys
package, absent = sys.argv[1], sys.argv[2].split(",")
root = importlib.import_module(package)
failed = []
for info in pkgutil.walk_packages(root.__path__, package + "."):
    # Alembic's env.py runs only inside an alembic migration context.
    if info.name.endswith(".migrations.env"):
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed.append(f"{info.name}: {exc!r}")
present = [name for name in absent if importlib.util.find_spec(name) is not None]
print("\\n".join(failed + [f"present: {name}" for name in present]))
sys.exit(1 if failed or present else 0)
"""

CASES = {
    # extra: (package, its source root, importable names that must be absent)
    "operator": (
        "exchange_operator",
        REPO / "operator",
        "strawberry,aiokafka,asyncpg,aiobotocore,fastapi,exchange,kubernetes,lightkube",
    ),
    "services": ("exchange", REPO / "services", "kopf,kubernetes,lightkube,exchange_operator"),
}


def venv_with(extra: str, tmp_path: Path) -> Path:
    assert UV.is_file(), f"{UV} is missing: run `make deps`"
    env = {**os.environ, "UV_CACHE_DIR": str(CACHE_DIR / "uv-cache")}
    lock = tmp_path / f"{extra}.lock"
    with open(lock, "w") as out:
        subprocess.run(
            [sys.executable, str(REPO / "hack" / "docker" / "runtime_lock.py"), "--extra", extra,
             str(REPO / "pyproject.toml"), str(REPO / "requirements.lock")],
            stdout=out, check=True,
        )  # fmt: skip
    venv = tmp_path / extra
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], env=env, check=True)
    subprocess.run(
        [str(UV), "pip", "install", "--quiet", "--offline", "--require-hashes", "--no-deps", "--python",
         str(venv / "bin" / "python"), "-r", str(lock)],
        env=env, check=True, timeout=600,
    )  # fmt: skip
    return venv / "bin" / "python"


@pytest.mark.parametrize("extra", sorted(CASES))
def test_the_image_code_imports_with_only_its_own_dependency_set(extra: str, tmp_path: Path):
    package, source_root, absent = CASES[extra]
    python = venv_with(extra, tmp_path)
    out = subprocess.run(
        [str(python), "-I", "-c", f"import sys; sys.path.insert(0, {str(source_root)!r}); exec({IMPORT_ALL!r})",
         package, absent],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_a_module_of_the_other_set_is_really_missing(tmp_path: Path):
    """The check can fail: the operator's venv cannot import a services module."""
    python = venv_with("operator", tmp_path)
    out = subprocess.run(
        [str(python), "-I", "-c", "import strawberry"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
