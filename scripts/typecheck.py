"""Type-check the package with pyright (basic mode; the settings are pyproject.toml's ``[tool.pyright]``).

adapters/ and evals/ install inside the package (setup.py maps them); the links
``sae_bench_amortization/adapters`` and ``sae_bench_amortization/evals`` lay them out there in the checkout
too, so a plain ``pyright`` (and an editor) resolves every import. Run from anywhere:

    .venv/bin/python scripts/typecheck.py            # the whole package
    .venv/bin/python scripts/typecheck.py runner     # only errors in files whose path contains 'runner'
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    here = str(Path(sys.executable).parent)  # the venv this runs in first
    pyright = shutil.which("pyright", path=here) or shutil.which("pyright")
    if pyright is None:
        print("pyright is not installed: bash scripts/dev.sh install", file=sys.stderr)
        return 2
    done = subprocess.run(
        [pyright, "--outputjson", "--pythonpath", sys.executable, "-p", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stdout + done.stderr, file=sys.stderr)
        return 2
    errors: set[str] = set()
    for item in report.get("generalDiagnostics", []):
        if item.get("severity") != "error":
            continue
        path = (
            Path(item["file"]).resolve().relative_to(ROOT)
        )  # a linked file: once, at its own path
        if argv and not any(part in str(path) for part in argv):
            continue
        line = item["range"]["start"]["line"] + 1
        rule = item.get("rule", "")
        message = item["message"].replace("\n", " ")
        errors.add(f"{path}:{line}: {message} ({rule})")
    print("\n".join(sorted(errors)))
    summary = report.get("summary", {})
    print(
        f"{len(errors)} errors (pyright basic, {summary.get('filesAnalyzed')} files, "
        f"{summary.get('warningCount', 0)} warnings)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
