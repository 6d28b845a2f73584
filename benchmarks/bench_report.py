"""``saebench report``'s render time and page size: the embedded default's results (the main job's four
modes), and a folder of 100 SAEs × 5 modes (the default's amortization_gap result with five modes, copied
under 100 SAE names with each copy's numbers scaled, so that no two rows are equal).

Each page is written by a fresh ``saebench report`` process (imports included: what a user waits for);
the time the command reports for itself (reading and rendering) is printed beside it.

    .venv/bin/python benchmarks/bench_report.py [--saes 100] [--keep DIR] [--screenshot docs/report.png]

``--screenshot`` saves the embedded default's page as headless Chromium shows it (selenium; Debian's
``chromium`` and ``chromium-driver``): the README's picture.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAEBENCH = [sys.executable, "-m", "sae_bench_amortization.cli"]
FIVE_MODES = ("amortized", "semi:5", "semi:25", "semi:50", "non_amortized")


def saebench(*args: object) -> str:
    done = subprocess.run([*SAEBENCH, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"saebench {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def scaled(value: object, factor: float) -> object:
    """Numbers scaled (ints and booleans, counts and flags, kept), the rest as it was."""
    if isinstance(value, float):
        return value * factor
    if isinstance(value, list):
        return [scaled(v, factor) for v in value]
    if isinstance(value, dict):
        return {k: scaled(v, factor) for k, v in value.items()}
    return value


def many_saes(result: Path, folder: Path, n_saes: int) -> None:
    """``n_saes`` copies of one amortization_gap result, each under its own SAE name."""
    data = json.loads(result.read_text())
    (folder / "amortization_gap").mkdir(parents=True)
    for i in range(n_saes):
        copy = dict(data)
        copy["eval_result_details"] = scaled(data["eval_result_details"], 1 + i / (10 * n_saes))
        copy["sae_lens_id"] = f"sae_{i:03d}"
        name = f"bench_sae_{i:03d}_eval_results.json"
        (folder / "amortization_gap" / name).write_text(json.dumps(copy))


def render(results: Path, page: Path) -> tuple[float, float, float]:
    """(wall seconds of the process, seconds the command reports, MB)."""
    start = time.perf_counter()
    printed = saebench("report", results, "--out", page)
    wall = time.perf_counter() - start
    own = float(re.search(r"MB in ([0-9.]+) s", printed).group(1))  # type: ignore[union-attr]
    return wall, own, page.stat().st_size / 1e6


def screenshot(page: Path, out: Path) -> None:
    """The top of ``page`` in headless Chromium, 1400 × 1000, saved as PNG."""
    import shutil

    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(page.resolve().as_uri())
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--saes", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="write the folders and pages here (kept)")
    parser.add_argument("--screenshot", type=Path, help="PNG of the embedded default's page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        default = root / "default"
        saebench("run", "--eval", "amortization_gap", "--output-dir", default)
        five = root / "five_modes"
        modes = [arg for mode in FIVE_MODES for arg in ("--inference", mode)]
        saebench("run", "--eval", "amortization_gap", *modes, "--output-dir", five)
        (result,) = (five / "amortization_gap").glob("*_eval_results.json")
        hundred = root / f"{args.saes}_saes"
        many_saes(result, hundred, args.saes)
        print(f"{'results':<28} {'process s':>10} {'render s':>9} {'MB':>6}")
        for name, folder in (("embedded default (4 modes)", default),
                             (f"{args.saes} SAEs x 5 modes", hundred)):  # fmt: skip
            wall, own, size = render(folder, root / f"{folder.name}.html")
            print(f"{name:<28} {wall:>10.1f} {own:>9.1f} {size:>6.1f}")
        if args.screenshot:
            screenshot(root / f"{default.name}.html", args.screenshot)
            print(f"wrote {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
