"""``python tests/run_commands.py PLAN.json RESULTS.json``: run a list of commands in this process, in the
current folder, and record each one's exit code, seconds and output tails.

A command is ``["saebench", ...]`` (run by the CLI's ``main``: one process pays the imports once) or
``["python", "-c", CODE]``. The environment (offline, ``HF_HOME``) is the caller's; the hub libraries
read it when first imported, so it must be set before this process starts."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if argv[0] == "saebench":
            from sae_bench_amortization.cli import main

            code = main(argv[1:])
        elif argv[:2] == ["python", "-c"]:
            try:
                exec(compile(argv[2], "<readme>", "exec"), {"__name__": "__main__"})
                code = 0
            except Exception:  # noqa: BLE001 - recorded, the test reports it
                traceback.print_exc()
                code = 1
        else:
            raise SystemExit(f"cannot run {argv}")
    return code, out.getvalue(), err.getvalue()


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    results = []
    for item in plan:
        start = time.perf_counter()
        code, out, err = run(item["argv"])
        results.append({**item, "code": code, "seconds": round(time.perf_counter() - start, 2),
                        "stdout": out[-6000:], "stderr": err[-3000:]})  # fmt: skip
        Path(sys.argv[2]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
