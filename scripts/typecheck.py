"""Type-check the package with pyright (basic mode), as it installs.

adapters/ and evals/ install inside the package (setup.py maps them), which an editable install does
through an import hook that no static checker follows. So the package is laid out as it installs — a
tree of links to this checkout's files — and pyright checks that tree; paths are reported back as
files of this checkout. Run from anywhere:

    .venv/bin/python scripts/typecheck.py            # the whole package
    .venv/bin/python scripts/typecheck.py runner     # only errors in files whose path contains 'runner'
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {  # installed place -> folder of this checkout (as setup.py maps them)
    "sae_bench_amortization": "sae_bench_amortization",
    "sae_bench_amortization/adapters": "adapters",
    "sae_bench_amortization/evals": "evals",
}


def link_tree(into: Path) -> None:
    """Every .py file of the three roots, linked at its installed path under ``into``."""
    for installed, folder in ROOTS.items():
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            target = into / installed / source.relative_to(ROOT / folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)


def main(argv: list[str]) -> int:
    here = str(Path(sys.executable).parent)  # the venv this runs in first
    pyright = shutil.which("pyright", path=here) or shutil.which("pyright")
    if pyright is None:
        print("pyright is not installed: bash scripts/dev.sh install", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="typecheck-") as tmp:
        tree = Path(tmp)
        link_tree(tree)
        config = {
            "include": ["sae_bench_amortization"],
            "extraPaths": [str(tree)],
            "typeCheckingMode": "basic",
            "pythonVersion": "3.11",
            "pythonPlatform": "Linux",
        }
        (tree / "pyrightconfig.json").write_text(json.dumps(config))
        done = subprocess.run(
            [pyright, "--outputjson", "--pythonpath", sys.executable, "-p", str(tree)],
            capture_output=True,
            text=True,
        )
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            print(done.stdout + done.stderr, file=sys.stderr)
            return 2
    errors = []
    for item in report.get("generalDiagnostics", []):
        if item.get("severity") != "error":
            continue
        installed = Path(item["file"]).relative_to(tree)
        path = _checkout_path(installed)
        if argv and not any(part in str(path) for part in argv):
            continue
        line = item["range"]["start"]["line"] + 1
        rule = item.get("rule", "")
        message = item["message"].replace("\n", " ")
        errors.append(f"{path}:{line}: {message} ({rule})")
    print("\n".join(sorted(errors)))
    checked = report.get("summary", {}).get("filesAnalyzed")
    print(f"{len(errors)} errors (pyright basic, {checked} files)")
    return 1 if errors else 0


def _checkout_path(installed: Path) -> Path:
    """The checkout's file behind an installed path of the link tree."""
    text = installed.as_posix()
    for prefix, folder in sorted(ROOTS.items(), key=lambda item: -len(item[0])):
        if text.startswith(prefix + "/"):
            return Path(folder) / text[len(prefix) + 1 :]
    return installed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
