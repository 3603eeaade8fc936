"""The package builds the way `make venv` builds it, with no deprecation from the build backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.binaries import REPO


def test_the_wheel_builds_without_warnings_and_states_its_spdx_license(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "incident_cli", source / "incident_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    # Build isolation, as pip install -e does: the build requirement decides the setuptools.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "BuildBackendWarning" not in output, output[-3000:]
    (wheel,) = tmp_path.glob("incident_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = archive.read(metadata).decode()
    assert "License-Expression: MIT" in headers.splitlines()
