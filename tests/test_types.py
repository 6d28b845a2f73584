"""The package type-checks: pyright (basic mode) over it as it installs (scripts/typecheck.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyright_basic_finds_no_error_in_the_package():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "typecheck.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary.startswith("0 errors (pyright basic, "), summary
    files = int(summary.split(", ")[1].split()[0])
    assert files >= 90, summary  # the whole package was read, not a corner of it
