"""Shared fixtures: the `pulse` binary under test and a scratch lake."""
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pulse_bin() -> str:
    path = os.environ.get("PULSE_BIN")
    if not path or not Path(path).exists():
        pytest.fail("PULSE_BIN must name the built pulse binary (run scripts/test)")
    return path


@pytest.fixture
def pulse(pulse_bin, tmp_path):
    """Run `pulse --lake <tmp>/lake ARGS...` in tmp_path; returns stdout, fails on error."""

    def run(*args, check=True):
        env = {k: v for k, v in os.environ.items() if k not in ("PULSE_CONFIG", "PULSE_LAKE")}
        proc = subprocess.run(
            [pulse_bin, "--lake", str(tmp_path / "lake"), *map(str, args)],
            cwd=tmp_path, env=env, capture_output=True, text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"pulse {args} exited {proc.returncode}: {proc.stderr}")
        return proc

    return run
