"""``saebench report``: a results folder → one self-contained HTML page (style, script, plotly and every
figure inline; it opens from disk with no network). The data comes from :mod:`.page_data` and
:mod:`.page_plots`; this module only writes markup."""

from __future__ import annotations

import html
import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs

from sae_bench_amortization.atomic import refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import EvalEntry, discover_evals, facts_by_column
from sae_bench_amortization.reports import page_data
from sae_bench_amortization.reports.compare import format_number, iter_result_files
from sae_bench_amortization.reports.page_assets import SCRIPT, STYLE
from sae_bench_amortization.reports.page_plots import eval_figures
from sae_bench_amortization.reports.plots import per_sae_and_mode
from sae_bench_amortization.reports.scan import Scan, scan_results
from sae_bench_amortization.targets import check_apart, check_creatable, named

REPORT_NAME = "report.html"
GENERATOR = '<meta name="generator" content="saebench report">'


def check_own_page(path: Path) -> None:
    """One line when ``path`` exists and is not a page this command wrote (``run --report`` replaces only
    its own)."""
    if path.is_dir() or (path.exists() and GENERATOR not in _head(path)):
        raise InputError(f"--report: {path} exists and is not a saebench report: move it first")


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else format_number(value, digits)


def _table(
    header: Iterable[str],
    rows: Iterable[Iterable[str]],
    table_id: str = "",
    sortable: bool = False,
    row_attrs: list[str] | None = None,
) -> str:
    """A table from already-escaped cell markup (``<td ...>...</td>`` per cell); ``row_attrs``: each
    row's attributes, already escaped."""
    classes = ' class="sortable-table"' if sortable else ""
    ident = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(header)
    rows = list(rows)
    attrs = row_attrs or [""] * len(rows)
    body = "\n".join(
        f"<tr{' ' + a if a else ''}>{''.join(cells)}</tr>"
        for a, cells in zip(attrs, rows, strict=True)
    )
    return f"<table{ident}{classes}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _th(text: str, title: str = "", cls: str = "") -> str:
    tip = f' title="{_e(title)}"' if title else ""
    kind = f' class="{cls}"' if cls else ""
    return f"<th{kind}{tip}>{_e(text)}</th>"


def _td(text: str, value: object = None, cls: str = "", title: str | None = None) -> str:
    attrs = [f'data-value="{_e("" if value is None else value)}"']
    if cls:
        attrs.append(f'class="{cls}"')
    if title:
        attrs.append(f'title="{_e(title)}"')
    return f"<td {' '.join(attrs)}>{_e(text)}</td>"


def _shown(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _sortable(value: object) -> object:
    return len(value) if isinstance(value, list) else value


def overview_html(view: dict[str, Any]) -> str:
    columns = view["columns"]
    header = [_th("SAE", cls="text"), _th("mode", cls="text"), _th("protocol", cls="text"),
              _th("problem", "the problem the modes solved (--objective)", "text"), _th("λ", "the L1 penalty of the mode's codes")]  # fmt: skip
    header += [_th(c["label"], f"{c['key']}: {c['title']}") for c in columns]
    rows, attrs = [], []
    for row in view["rows"]:
        settings = row["settings"]
        text = f"{row['sae']} {row['mode']}".lower()
        lam = settings.get("l1_coefficient")
        attrs.append(
            f'data-filter="{_e(text)}" data-sae="{_e(row["sae"])}" data-mode="{_e(row["mode"])}"'
            + (' class="encoder"' if row["encoder"] else "")
        )
        cells = [
            _td(row["sae"], row["sae"], "text"),
            _td(row["mode"], row["mode"], "text"),
            _td(settings.get("protocol") or "–", settings.get("protocol"), "text"),
            _td(settings.get("objective_solved") or "–", settings.get("objective_solved"), "text"),
            _td(_number(lam), lam),
        ]
        for column in columns:
            cell = row["cells"][column["key"]]
            value = cell["value"]
            cls = cell["judged"] if value is not None else "null"
            cells.append(_td(_number(value), value, cls, cell["why"] if value is None else None))
        rows.append(cells)
    legend = (
        "<p class=\"legend note\">Colour against the same SAE's encoder row (bold), by each metric's "
        'declared direction: <span class="status-better">better</span><span class="status-worse">'
        "worse</span>; – is null (hover for why). Click a column to sort; type to filter.</p>"
    )
    search = (
        '<input class="filter" data-table="overview" placeholder="filter SAE / mode" size="40">'
    )
    table = _table(header, rows, "overview", sortable=True, row_attrs=attrs)
    return f'{legend}{search}<div class="wide">{table}</div>'


def concepts_html(tables: list[dict[str, Any]]) -> str:
    if not tables:
        return '<p class="note">No result here carries per-concept evidence.</p>'
    parts = []
    for table in tables:
        modes = table["modes"]
        blocks = []
        for concept in table["concepts"]:
            header = [_th("value", cls="text"), *(_th(m) for m in modes), _th("in every mode")]
            rows = [
                [_td(spec["title"], spec["key"], "text")]
                + [_td(_number(concept["values"][spec["key"]][m]), concept["values"][spec["key"]][m])
                   for m in modes]
                + [_td("yes" if concept["in_every_mode"][spec["key"]] else "no")]
                for spec in table["values"]
            ]  # fmt: skip
            counts = [
                [_td(name, name, "text")]
                + [_td(_shown(concept["counts"][m].get(name)), _sortable(concept["counts"][m].get(name)))
                   for m in modes]
                + [_td("")]
                for name in page_data.COUNT_KEYS
            ]  # fmt: skip
            facts = (
                f"{concept['n_tokens']} tokens; in the encoder's codes: main latents "
                f"{_shown(concept['main_latents'])}, absorbing latents "
                f"{_shown(concept['absorbing_latents'])}, the splitting probe's top latents "
                f"{_shown(concept['top_latents'])}"
            )
            blocks.append(
                f'<details class="concept" data-concept="{_e(concept["concept"])}" '
                f'data-sae="{_e(table["sae"])}"><summary>{_e(concept["concept"])}</summary>'
                f'<p class="note">{_e(facts)}</p>{_table(header, rows + counts)}</details>'
            )
        parts.append(
            f"<h3>{_e(table['sae'])} · {_e(table['eval'])} ({len(table['concepts'])} concepts; "
            f"{_e(table['path'])})</h3>"
            '<p class="note">Only concepts defined in every mode ("in every mode": yes) enter a mean '
            "compared across modes.</p>" + "\n".join(blocks)
        )
    return "\n".join(parts)


def truth_html(blocks: list[dict[str, Any]]) -> str:
    if not blocks:
        return '<p class="note">No result here was computed on a source with planted truth.</p>'
    parts = []
    for block in blocks:
        header = [_th("mode", cls="text"), *(_th(k) for k in block["keys"])]
        rows = [
            [_td(r["mode"], r["mode"], "text"), *(_td(_number(r[k]), r[k]) for k in block["keys"])]
            for r in block["rows"]
        ]
        parts.append(f"<h3>{_e(block['sae'])} · {_e(block['eval'])}</h3>" + _table(header, rows))
    return (
        '<p class="note">MCC: mean |cos| of the matching of decoder rows to the planted features; '
        "precision, recall, F1: each latent as a detector of its best-matching feature, averaged.</p>"
        + "\n".join(parts)
    )


def provenance_html(entries: list[dict[str, Any]]) -> str:
    parts = []
    for entry in entries:
        rows = [[_td(k, k, "text"), _td(v, v, "text")] for k, v in entry["fields"].items()]
        parts.append(
            f"<details><summary>{_e(entry['path'])}</summary>"
            + _table([_th("field", cls="text"), _th("value", cls="text")], rows)
            + "</details>"
        )
    return "\n".join(parts)


def baseline_html(checks: list[Any], notes: list[str], baseline: str) -> str:
    order = ("worse", "changed", "missing", "not judged (λ changed)", "better", "within tolerance")
    header = [_th(h, cls="text") for h in ("sae", "eval", "mode", "metric")]
    header += [_th("baseline"), _th("current"), _th("status", cls="text")]
    shown = sorted(checks, key=lambda c: order.index(c.status) if c.status in order else len(order))
    rows = [
        [_td(c.sae, c.sae, "text"), _td(c.eval, c.eval, "text"), _td(c.mode, c.mode, "text"),
         _td(c.metric, c.metric, "text"), _td(_number(c.baseline), c.baseline),
         _td("missing" if c.current is None else _number(c.current), c.current),
         _td(c.status, c.status, f"text status-{c.status.split()[0]}")]
        for c in shown
    ]  # fmt: skip
    counts = {s: sum(c.status == s for c in checks) for s in order}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    notes_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return (
        f"<p>Against <code>{_e(baseline)}</code>: {len(checks)} metrics checked: {_e(summary)}.</p>"
        + notes_html
        + _table(header, rows, "regress", sortable=True)
    )


def skipped_html(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li><code>{_e(p)}</code>: {_e(why)}</li>" for p, why in skipped)
    return f'<h2 id="skipped">Skipped files ({len(skipped)})</h2><ul class="skipped">{items}</ul>'


def build_page(
    scan: Scan,
    registry: Mapping[str, EvalEntry],
    regress: tuple[list[Any], list[str], str] | None = None,
) -> str:
    """The whole page for ``scan`` (and, given, the regress checks, notes and baseline path)."""
    facts = facts_by_column(registry)
    frame = scan.frame()
    sections = [
        (
            "overview",
            "Overview: every SAE × mode",
            overview_html(page_data.overview(scan, registry)),
        )
    ]
    figures: dict[str, Any] = {}
    plots = []
    for eval_name, rows in frame.groupby("eval", sort=True):
        table = per_sae_and_mode(rows.drop(columns=["path"]), registry)
        for i, spec in enumerate(eval_figures(table, facts)):
            ident = f"figure-{len(figures)}"
            figures[ident] = spec
            plots.append(f'<h3>{_e(eval_name)}</h3><div id="{ident}" class="figure"></div>' if i == 0
                         else f'<div id="{ident}" class="figure"></div>')  # fmt: skip
    sections.append(
        ("plots", "Plots per eval", "\n".join(plots) or '<p class="note">Nothing to draw.</p>')
    )
    sections.append(("concepts", "Per-concept evidence (splitting and absorption)",
                     concepts_html(page_data.concept_tables(scan))))  # fmt: skip
    sections.append(("truth", "Ground truth", truth_html(page_data.ground_truth(scan))))
    if regress is not None:
        sections.append(("regress", "Against the baseline", baseline_html(*regress)))
    sections.append(
        ("provenance", "Provenance of each result", provenance_html(page_data.provenance(scan)))
    )
    saes = frame["sae"].nunique()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " · ".join(
        f'<a href="#section-{ident}">{_e(title.split(":")[0])}</a>' for ident, title, _ in sections
    )
    body = "\n".join(
        f'<h2 id="section-{ident}">{_e(title)}</h2>\n{content}'
        for ident, title, content in sections
    )
    specs = json.dumps(figures).replace("</", "<\\/")
    plotly = get_plotlyjs() if figures else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{GENERATOR}
<title>saebench report: {_e(scan.results_dir.name or scan.results_dir)}</title>
<style>{STYLE}</style>
<script>{plotly}</script>
</head><body>
<h1>saebench report: <code>{_e(scan.results_dir)}</code></h1>
<p class="note">{len(scan.files)} result files, {saes} SAEs, {frame["eval"].nunique()} evals;
{len(scan.skipped)} skipped. Made {stamp} by sae-bench-amortization {_e(version("sae-bench-amortization"))}.</p>
<p>{nav}</p>
{skipped_html(scan.skipped)}
{body}
<script type="application/json" id="figure-specs">{specs}</script>
<script>{SCRIPT}</script>
</body></html>
"""


@dataclass(frozen=True)
class Report:
    path: Path
    scan: Scan
    seconds: float
    size: int


def write_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    baseline: str | Path | None = None,
    overwrite: bool = False,
    registry: Mapping[str, EvalEntry] | None = None,
) -> Report:
    """``saebench report``: the page of ``results_dir`` at ``out`` (default RESULTS_DIR/report.html);
    every check before anything is written; skipped files are listed on the page and on stderr."""
    start = time.perf_counter()
    if out == "":
        raise InputError("--out must name a file")
    registry = discover_evals() if registry is None else registry
    target = Path(out) if out is not None else Path(results_dir) / REPORT_NAME
    results = Path(results_dir)
    read = (
        named(("RESULTS_DIR", str(p)) for p in iter_result_files(results))
        if results.is_dir()
        else {}
    )
    if baseline is not None:
        read = {**read, **named([("--baseline", str(baseline))])}
    check_apart({"--out": target}, read)
    if target.is_dir():
        raise InputError(f"--out {target} is a folder: name the page's file")
    check_creatable(target, "--out")
    refuse_existing(target, "--out", overwrite)
    scan = scan_results(results, registry)
    if not scan.files:
        first = scan.skipped[0]
        raise InputError(
            f"no readable result under {results}: {len(scan.skipped)} skipped ({first[0]}: {first[1]})"
        )
    regress = _regress(scan, baseline, registry) if baseline is not None else None
    for path, why in scan.skipped:
        print(f"saebench: skipped {path}: {why}", file=sys.stderr)
    page = build_page(scan, registry, regress)
    write_text_atomic(target, page)
    return Report(target, scan, time.perf_counter() - start, len(page.encode()))


def _regress(
    scan: Scan, baseline: str | Path, registry: Mapping[str, EvalEntry]
) -> tuple[list[Any], list[str], str]:
    from sae_bench_amortization.reports.regress import (
        compare_with_baseline,
        read_baseline_concepts,
        read_baseline_document,
    )

    expected, protocols, objectives = read_baseline_document(baseline)
    checks, notes = compare_with_baseline(
        scan.frame(evidence=True).drop(columns=["path"]), expected, registry=dict(registry),
        protocols=protocols, objectives=objectives, concepts=read_baseline_concepts(baseline),
    )  # fmt: skip
    return checks, notes, str(baseline)


report = write_report  # ``sae_bench_amortization.report(...)``
