"""Shared pieces of the benchmarks: run a command, measure wall time and peak memory."""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "pulse-target"))
PULSE = TARGET / "release" / "pulse"

# Generator settings that give about 1M and 10M events (2 communities, 365 days), and a
# 90-day history of the same communities (for "run time against history length").
SIZES = {
    "90d": ["--members", "17500", "--days", "90", "--communities", "2"],
    "1m": ["--members", "17500", "--days", "365", "--communities", "2"],
    "10m": ["--members", "175000", "--days", "365", "--communities", "2"],
    "100m": ["--members", "1750000", "--days", "365", "--communities", "2"],
    "110m": ["--members", "1925000", "--days", "365", "--communities", "2"],
}
END = "2026-11-23"


def build():
    """The release build, with the features CI builds (the local engine runs either way)."""
    subprocess.run(["cargo", "build", "--release", "--locked", "--features", "ballista"], cwd=ROOT, check=True)


def run_measured(cmd, cwd=None, env=None):
    """Run cmd in a child and return (seconds, peak RSS MiB, stdout) using os.wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd} failed ({proc.returncode}):\n{err.decode()[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, out.decode()


def events_file(size, workdir):
    path = Path(workdir) / f"events-{size}.ndjson"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        run_measured([str(PULSE), "generate", *SIZES[size], "--seed", "7", "--end", END, "--out", str(path)])
    return path


def count_lines(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
