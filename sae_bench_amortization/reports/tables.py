"""Short human-readable tables for the terminal, and the columns of an eval's own CSV and table as its
detail rows' metric facts declare them (``column``, ``short``, ``fmt``, ``protocol``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sae_bench_amortization.registry import MetricFacts, metric_facts
from sae_bench_amortization.runner.request import SAEOutcome


def _in_column_order(detail_class: type) -> list[tuple[str, MetricFacts]]:
    """The fields of ``detail_class`` that declare a ``column``, in column order."""
    declared = [(name, facts) for name, facts in metric_facts(detail_class).items()]
    placed = [(name, facts) for name, facts in declared if facts.column is not None]
    return sorted(placed, key=lambda item: item[1].column or 0)


def csv_columns(detail_class: type, rows: Sequence[Mapping[str, object]]) -> tuple[str, ...]:
    """The CSV columns of rows of ``detail_class``: those measured under every protocol in column order,
    then those of one protocol only (``protocol``) that some row has."""
    placed = _in_column_order(detail_class)
    always = [name for name, facts in placed if facts.protocol is None]
    present = [
        name
        for name, facts in placed
        if facts.protocol is not None and any(name in row for row in rows)
    ]
    return (*always, *present)


def always_shown(detail_class: type) -> frozenset[str]:
    """The fields of ``detail_class`` whose terminal-table column stays when no row measured them."""
    return frozenset(
        name for name, facts in metric_facts(detail_class).items() if facts.always_shown
    )


def table_columns(detail_class: type) -> list[tuple[str, str, str]]:
    """The (title, key, format) columns of a terminal table of rows of ``detail_class``: the fields with a
    ``short`` title, in column order (:func:`shown_columns` then drops those nothing measured)."""
    return [
        (facts.short, name, facts.fmt)
        for name, facts in _in_column_order(detail_class)
        if facts.short is not None
    ]


def aligned(header: list[str], rows: list[list[str]], gap: int = 2, left: int = 1) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell plus ``gap``: values never run
    into each other, however large. The first ``left`` columns are left-aligned, the others right-aligned."""
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def cell(i: int, text: str) -> str:
        pad = " " * gap if i else ""
        return pad + (text.ljust(widths[i]) if i < left else text.rjust(widths[i]))

    return ["".join(cell(i, text) for i, text in enumerate(line)).rstrip() for line in table]


MAX_NUMBER_WIDTH = 10  # wider numbers are printed in scientific form


def format_number(value, fmt: str, max_width: int = MAX_NUMBER_WIDTH) -> str:
    """``value`` in ``fmt``; '-' for None (a null metric); scientific (``1.23e+40``) when ``fmt`` would make it
    wider than ``max_width`` characters."""
    if value is None:
        return "-"
    text = format(value, fmt)
    if len(text) > max_width and isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, ".3g")
    return text


def shown_columns(
    columns: list[tuple[str, str, str]],
    rows: list[dict],
    always: set[str] | frozenset[str] = frozenset(),
) -> list[tuple[str, str, str]]:
    """The (title, key, format) columns a table of metric rows shows: those in ``always``, those measured
    in some row, and those null with a reason (a key of some row's ``undefined``): a null metric keeps its
    column (shown as '-', its reason printed below); a metric that does not apply to any row is left out."""

    def shown(key: str) -> bool:
        return (
            key in always
            or any(row.get(key) is not None for row in rows)
            or any(key in (row.get("undefined") or {}) for row in rows)
        )

    return [column for column in columns if shown(column[1])]


def format_summary(rows: list[tuple[str, SAEOutcome]]) -> str:
    """One line per (eval, SAE): status and the eval's headline metrics."""
    if not rows:
        return "nothing was run"
    lines = []
    for eval_name, outcome in rows:
        metrics = "  ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in outcome.metrics.items()
        )
        lines.append([eval_name, outcome.sae_name, outcome.status, metrics])
    header = ["eval", "sae", "status", "metrics"]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(line, [*widths, 0], strict=True)
        ).rstrip()
        for line in [header, *lines]
    )


def print_summary(rows: list[tuple[str, SAEOutcome]]) -> None:
    print(format_summary(rows))
