"""The style and script ``saebench report`` inlines into its page (no file is fetched when it opens)."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
th.sortable { cursor: pointer; } th.sorted-asc::after { content: " ▲"; } th.sorted-desc::after { content: " ▼"; }
td.text, th.text { text-align: left; }
td.better { background: #d9f2d9; } td.worse { background: #f8d7d7; } td.null { color: #888; }
tr.encoder td { font-weight: 600; }
.note { color: #555; font-size: 0.85rem; } .skipped li { color: #8a4b00; }
details { margin: 0.3rem 0; } summary { cursor: pointer; }
.legend span { padding: 0 6px; margin-right: 8px; }
.status-worse { background: #f8d7d7; } .status-better { background: #d9f2d9; }
.status-missing, .status-changed { background: #fde9c9; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-value');
    if (v === null || v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v : n;
  }
  function compare(a, b, asc) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;   // nulls last, either way
    if (b === null) return -1;
    var r = (typeof a === 'number' && typeof b === 'number') ? a - b : String(a).localeCompare(String(b));
    return asc ? r : -r;
  }
  document.querySelectorAll('table.sortable-table').forEach(function (table) {
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function (th, index) {
      th.classList.add('sortable');
      th.addEventListener('click', function () {
        var asc = !th.classList.contains('sorted-asc');
        heads.forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
        th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) { return compare(key(r1.cells[index]), key(r2.cells[index]), asc); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('input.filter').forEach(function (input) {
    var table = document.getElementById(input.getAttribute('data-table'));
    input.addEventListener('input', function () {
      var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.getAttribute('data-filter');
        row.style.display = words.every(function (w) { return text.indexOf(w) >= 0; }) ? '' : 'none';
      });
    });
  });
  var specs = document.getElementById('figure-specs');
  if (specs && window.Plotly) {
    var figures = JSON.parse(specs.textContent);
    Object.keys(figures).forEach(function (id) {
      var spec = figures[id];
      window.Plotly.newPlot(id, spec.data, spec.layout, {displaylogo: false, responsive: true});
    });
  }
})();
"""
