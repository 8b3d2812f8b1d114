"""The report as a page: Markdown, or one self-contained HTML page with every sample filterable
by method, task, length and correctness (the prediction shown is the one scored)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from analysis.table import ScoredTable
from evals.babilong import length_order
from reports.runs import About, header_fields, header_lines
from reports.tables import Table, markdown_text


def sample_rows(table: ScoredTable) -> list[dict[str, object]]:
    """One entry per unit for the HTML's per-sample view: its prediction, correctness and score
    come from the same scoring (``analysis.table``)."""
    frame = table.frame.assign(_length=table.frame["length"].map(lambda v: length_order(str(v))))
    frame = frame.sort_values(["dataset", "task", "_length", "sample_id", "config"], kind="stable")
    return [
        {
            "method": str(row["config"]),
            "dataset": str(row["dataset"]),
            "task": str(row["task"]),
            "length": str(row["length"]),
            "sample": str(row["sample_id"]),
            "correct": "yes" if row["correct"] else "no",
            "score": round(float(row["score"]), 3),
            "target": str(row["target"]),
            "prediction": "" if row["prediction"] is None else str(row["prediction"]),
            "raw output": ""
            if row["raw_output"] is None or pd.isna(row["raw_output"])
            else str(row["raw_output"]),
            "kept tokens": None if pd.isna(row["kept_tokens_final"]) else int(row["kept_tokens_final"]),
            "seconds": None if pd.isna(row["seconds_total"]) else round(float(row["seconds_total"]), 2),
            "status": str(row["status"]),
        }
        for row in frame.to_dict("records")
    ]


def markdown(report_tables: list[Table], about: About, images: list[Path], base: Path) -> str:
    """The report as Markdown (images linked relative to ``base``). Every title, header line and
    cell is escaped (``reports.tables.markdown_text``): a label, run id or version shows as the
    text it is, and a row keeps its table's column count."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(markdown_text(cell) for cell in cells) + " |"

    lines = ["# laserkv report", "", *header_lines(about), ""]
    for table in report_tables:
        lines += [f"## {markdown_text(table.title)}", "", row(table.header), "|" + "---|" * len(table.header)]
        lines += [row(cells) for cells in table.rows]
        lines.append("")
    for image in images:
        link = quote(image.relative_to(base).as_posix())
        lines += [f"![{markdown_text(image.stem)}]({link})", ""]
    return "\n".join(lines)


SAMPLE_FILTERS = ("method", "task", "length", "correct")
SAMPLE_COLUMNS = ("method", "dataset", "task", "length", "sample", "correct", "score", "target", "prediction",
                  "raw output", "kept tokens", "seconds")  # fmt: skip
SAMPLE_SCRIPT = """
(function () {
  var table = document.getElementById('samples');
  var selects = document.querySelectorAll('select[data-filter]');
  function apply() {
    var shown = 0;
    var rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var keep = true;
      for (var j = 0; j < selects.length; j++) {
        var value = selects[j].value;
        if (value && rows[i].getAttribute('data-' + selects[j].getAttribute('data-filter')) !== value) {
          keep = false;
        }
      }
      rows[i].style.display = keep ? '' : 'none';
      if (keep) { shown++; }
    }
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' samples shown';
  }
  for (var j = 0; j < selects.length; j++) { selects[j].addEventListener('change', apply); }
  apply();
})();
"""
"""The per-sample view's filter: plain DOM script, inline (the page needs nothing from the network)."""


def sample_section(samples: list[dict[str, object]]) -> str:
    """The HTML per-sample view: one select per filter, then one table row per unit."""
    parts = ["<h2>Per-sample results</h2><p class='filters'>"]
    for name in SAMPLE_FILTERS:
        values = sorted({str(sample[name]) for sample in samples}, key=lambda value: (len(value), value))
        options = "".join(
            f"<option value='{html.escape(v, quote=True)}'>{html.escape(v)}</option>" for v in values
        )
        parts.append(
            f"<label>{name} <select data-filter='{name}' id='filter-{name}'>"
            f"<option value=''>all</option>{options}</select></label> "
        )
    parts.append("<span id='shown'></span></p><table id='samples'><thead><tr>")
    parts += [f"<th>{html.escape(column)}</th>" for column in SAMPLE_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for sample in samples:
        data = " ".join(
            f"data-{name}='{html.escape(str(sample[name]), quote=True)}'" for name in SAMPLE_FILTERS
        )
        cells = "".join(
            f"<td>{html.escape('-' if sample[column] is None else str(sample[column]))}</td>"
            for column in SAMPLE_COLUMNS
        )
        parts.append(f"<tr {data}>{cells}</tr>")
    parts.append(f"</tbody></table><script>{SAMPLE_SCRIPT}</script>")
    return "".join(parts)


def html_page(
    report_tables: list[Table], about: About, images: list[Path], samples: list[dict[str, object]]
) -> str:
    """The report as one self-contained HTML page (images embedded as data URIs, the per-sample
    view's filter inline; nothing is fetched)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>laserkv report</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}th{background:#f3f3f3}"
        "#samples td{max-width:28em;overflow-wrap:anywhere}.filters label{margin-right:1em}"
        "</style></head><body>",
        "<h1>laserkv report</h1><ul>",
        *(
            f"<li><b>{html.escape(name)}</b>: {html.escape(value)}</li>"
            for name, value in header_fields(about)
        ),
        "</ul>",
    ]
    for table in report_tables:
        parts.append(f"<h2>{html.escape(table.title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(cell)}</th>" for cell in table.header]
        parts.append("</tr>")
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(image.stem)}</h3>"
            f"<img alt='{html.escape(image.stem, quote=True)}' src='data:image/png;base64,{data}'>"
        )
    parts.append(sample_section(samples))
    parts.append("</body></html>")
    return "".join(parts)
