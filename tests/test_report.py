"""``saebench report``: one self-contained HTML page per results folder. Its values are read back from the
page's markup and checked against the result JSON they came from; bad input is one line; a real browser
(headless Chromium) sorts the table and opens a concept; the page fetches nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import sae_bench_amortization as sba

# the browser test must run where .ci/run installed the browser (elsewhere it is skipped, with why)
REQUIRE_BROWSER = os.environ.get("SAEBENCH_REQUIRE_BROWSER") == "1"


class Page(HTMLParser):
    """The parts of the page the tests read: tables by id (rows of (row attrs, [(cell attrs, text)])),
    concept drill-downs, and every src / href."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[tuple[dict, str]]]]] = {}
        self.concepts: list[dict] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self._table: str | None = None
        self._row: tuple[dict, list] | None = None
        self._cell: tuple[dict, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        for name in ("src", "href"):
            if name in attrs:
                self.links.append((tag, name, attrs[name]))
        if tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = (attrs, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = (attrs, [])
        elif tag == "details" and "data-concept" in attrs:
            self.concepts.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row[1].append((self._cell[0], "".join(self._cell[1])))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._row[1] and self._row[1][0][0].get("data-value") is not None:  # a body row
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)


def metric_keys(text: str) -> list[str]:
    """The overview's metric columns, from their header titles ("key: legend")."""
    start = text.index('<table id="overview"')
    head = text[start : text.index("</thead>", start)]
    keys = []
    for tag in re.findall(r"<th(?:\s[^>]*)?>", head):
        title = tag.split('title="', 1)[1].split('"', 1)[0] if 'title="' in tag else ""
        keys.append(title.split(":", 1)[0] if ":" in title else "")
    return keys


@pytest.fixture(scope="module")
def report(world_oracle_results, tmp_path_factory):
    """The page of the oracle SAE's four results on the synthetic world, written beside (not into) the
    read-only results folder, through the library call."""
    out = tmp_path_factory.mktemp("report") / "page.html"
    done = sba.report(world_oracle_results, out)
    return done, out.read_text()


def gap_result(results: Path) -> dict:
    (path,) = (results / "amortization_gap").glob("*_eval_results.json")
    return json.loads(path.read_text())


def test_overview_values_and_colours_follow_the_result_json(report, world_oracle_results):
    done, text = report
    assert done.path.stat().st_size == done.size and not done.scan.skipped
    assert len(done.scan.files) == 4  # dead_dense, splitting, absorption_rate, amortization_gap
    page = Page(text)
    keys = metric_keys(text)
    gap = gap_result(world_oracle_results)
    details = {row["mode"]: row for row in gap["eval_result_details"]}
    rows = {(a["data-sae"], a["data-mode"]): cells for a, cells in page.tables["overview"]}
    (sae,) = {s for s, _ in rows}  # one SAE: the oracle
    assert [m for s, m in rows if s == sae] == list(details)  # one row per mode, in mode order
    nmse = keys.index("nmse")
    encoder_nmse = details["amortized"]["nmse"]
    for mode, detail in details.items():
        attrs, _ = rows[(sae, mode)][nmse]
        assert float(attrs["data-value"]) == pytest.approx(detail["nmse"], rel=1e-12)
        # NMSE: higher is worse; the encoder's own row is not judged
        expected = (
            "" if mode == "amortized" else ("worse" if detail["nmse"] > encoder_nmse else "better")
        )
        assert attrs.get("class", "") == expected, (mode, attrs)
    # a null value shows "–" and says why on hover
    nulls = [(a, t) for cells in rows.values() for a, t in cells if a.get("class") == "null"]
    assert all(t == "–" and a.get("title") for a, t in nulls)


def test_concept_drill_down_holds_every_concept_of_every_mode(report, world_oracle_results):
    _, text = report
    gap = gap_result(world_oracle_results)
    concepts = {str(c["concept"]) for row in gap["eval_result_details"] for c in row["concepts"]}
    page = Page(text)
    assert {c["data-concept"] for c in page.concepts} == concepts
    assert "Ground truth" in text and "mcc" in text  # the synthetic source has planted truth
    assert "fingerprint." in text  # provenance


def test_the_page_fetches_nothing(report):
    """Every src / href is a fragment: scripts, styles and figures are inline."""
    _, text = report
    page = Page(text)
    assert page.links and all(value.startswith("#") for _, _, value in page.links), page.links
    assert "<link" not in text and "@import" not in text
    assert text.count("<script") == 3  # plotly, the figures' specs, the page's script


def test_bad_input_is_one_line_and_nothing_is_lost(cli, world_oracle_results, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("report", empty)
    assert result.code == 2 and result.err.count("\n") == 1 and "no result files" in result.err
    assert not (empty / "report.html").exists()
    results = tmp_path / "results"
    shutil.copytree(world_oracle_results, results)
    (results / "junk").mkdir()
    (results / "junk" / "broken_eval_results.json").write_text("{")
    (results / "junk" / "foreign_eval_results.json").write_text('{"hello": 1}')
    page = tmp_path / "page.html"
    page.write_text("mine")
    refused = cli("report", results, "--out", page)
    assert refused.code == 2 and "--overwrite" in refused.err and page.read_text() == "mine"
    into_results = cli("report", results, "--out", next(results.rglob("*_eval_results.json")))
    assert into_results.code == 2 and into_results.err.count("\n") == 1
    done = cli("report", results, "--out", page, "--overwrite")
    assert done.code == 0, done.err
    assert "2 skipped" in done.out
    assert (
        "junk/broken_eval_results.json" in done.err and "junk/foreign_eval_results.json" in done.err
    )
    written = page.read_text()
    assert "Skipped files (2)" in written and "not JSON" in written


def test_baseline_table_on_the_page(cli, world_oracle_results, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", world_oracle_results, "--write-baseline", baseline).code == 0
    page = tmp_path / "page.html"
    done = cli("report", world_oracle_results, "--out", page, "--baseline", baseline)
    assert done.code == 0, done.err
    checks = Page(page.read_text()).tables["regress"]
    statuses = {cells[-1][1] for _, cells in checks}
    assert checks and statuses == {"within tolerance"}
    # the same checks `saebench regress` makes (metrics without a direction only when named)
    regress = cli("regress", "--results", world_oracle_results, "--baseline", baseline)
    n_checked = int(re.search(r"(\d+) metrics checked", regress.out).group(1))  # type: ignore[union-attr]
    assert len(checks) == n_checked


def _browser():
    try:
        from selenium import webdriver
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        return None, "chromedriver not found (Debian: apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service), None


def test_in_a_real_browser_the_table_sorts_and_a_concept_opens(
    report, world_oracle_results, tmp_path
):
    done, text = report
    driver, why = _browser()
    if driver is None:
        if REQUIRE_BROWSER:
            pytest.fail(why)
        pytest.skip(why)
    from selenium.webdriver.common.by import By

    try:
        driver.get(done.path.resolve().as_uri())
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        assert driver.execute_script("return typeof window.Plotly") == "object"
        assert driver.find_elements(By.CSS_SELECTOR, "div.figure .main-svg")  # figures drawn
        # sort by NMSE: ascending, then descending
        nmse = metric_keys(text).index("nmse")
        header = driver.find_elements(By.CSS_SELECTOR, "#overview thead th")[nmse]
        header.click()
        column = f"#overview tbody tr td:nth-child({nmse + 1})"

        def values():
            return [
                c.get_attribute("data-value") for c in driver.find_elements(By.CSS_SELECTOR, column)
            ]

        shown = [float(v) for v in values() if v]
        assert shown == sorted(shown) and len(shown) >= 4
        header.click()
        shown = [float(v) for v in values() if v]
        assert shown == sorted(shown, reverse=True)
        # filter: only the rows of one mode stay visible
        box = driver.find_element(By.CSS_SELECTOR, "input.filter")
        box.send_keys("semi:5")
        visible = [
            r
            for r in driver.find_elements(By.CSS_SELECTOR, "#overview tbody tr")
            if r.is_displayed()
        ]
        assert visible and all(r.get_attribute("data-mode") == "semi:5" for r in visible)
        # open one concept's drill-down and read its per-mode ΔF1 against the JSON
        gap = gap_result(world_oracle_results)
        modes = [row["mode"] for row in gap["eval_result_details"]]
        concept = gap["eval_result_details"][0]["concepts"][0]["concept"]
        details = driver.find_element(By.CSS_SELECTOR, f'details.concept[data-concept="{concept}"]')
        driver.execute_script("arguments[0].scrollIntoView()", details)
        details.find_element(By.TAG_NAME, "summary").click()
        assert details.get_attribute("open") is not None
        first_row = details.find_elements(By.CSS_SELECTOR, "tbody tr")[0]  # ΔF1 per mode
        cells = first_row.find_elements(By.TAG_NAME, "td")[1 : 1 + len(modes)]
        for mode, cell in zip(modes, cells, strict=True):
            (expected,) = [c["delta_f1"] for r in gap["eval_result_details"] if r["mode"] == mode
                           for c in r["concepts"] if c["concept"] == concept]  # fmt: skip
            value = cell.get_attribute("data-value")
            assert (value == "" and expected is None) or float(value) == pytest.approx(expected)
        # nothing the interactions did raised an error either
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_run_report_writes_its_page_and_replaces_only_its_own(cli, planted, tmp_path):
    out = tmp_path / "out"
    run = ["run", "--eval", "dead_dense", "--sae-path", planted.path, "--activations", planted.activations,
           "--output-dir", out, "--report"]  # fmt: skip
    first = cli(*run)
    assert first.code == 0, first.err
    page = out / "report.html"
    assert "wrote " + str(page) in first.out and 'content="saebench report"' in page.read_text()
    again = cli(*run)  # its own earlier page is replaced
    assert again.code == 0, again.err
    page.write_text("<html>my notes</html>")
    before = sorted(p.name for p in out.rglob("*"))
    refused = cli(*run, "--force-rerun")  # someone else's file: refused before anything runs
    assert (
        refused.code == 2
        and refused.err.count("\n") == 1
        and "not a saebench report" in refused.err
    )
    assert (
        page.read_text() == "<html>my notes</html>"
        and sorted(p.name for p in out.rglob("*")) == before
    )
