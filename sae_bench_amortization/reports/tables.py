"""Short human-readable tables for the terminal."""

from __future__ import annotations

from sae_bench_amortization.runner.request import SAEOutcome


def format_summary(rows: list[tuple[str, SAEOutcome]]) -> str:
    """One line per (eval, SAE): status and the eval's headline metrics."""
    if not rows:
        return "nothing was run"
    header = ("eval", "sae", "status", "metrics")
    lines = [header]
    for eval_name, outcome in rows:
        metrics = "  ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in outcome.metrics.items()
        )
        lines.append((eval_name, outcome.sae_name, outcome.status, metrics))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
        + "  "
        + line[3]
        for line in lines
    ).rstrip()


def print_summary(rows: list[tuple[str, SAEOutcome]]) -> None:
    print(format_summary(rows))
