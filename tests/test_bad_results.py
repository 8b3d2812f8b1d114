"""Bad results never give a traceback (issue 38): a shard with a column of the wrong type or a null
where every row has a value, a manifest of the wrong shape, an unwritable ``--out`` or a full disk
each end ``laserkv report`` with one line naming the file (or path) and the field, exit code 2, and
nothing new on disk. Labels, run ids and versions reach the Markdown report escaped: no raw HTML,
and a ``|`` keeps its table's column count."""

from __future__ import annotations

import errno
import html
import json
import pathlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from cluster.rows import RESULT_SCHEMA, blank_row

SCRIPT, IMAGE, PIPE = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "a|b"
NULLABLE = pa.schema([pa.field(field.name, field.type, nullable=True) for field in RESULT_SCHEMA])


def rows(methods: tuple[str, ...] = ("full", "laser"), **values: object) -> list[dict[str, object]]:
    """Two samples per method, answered right, as a worker writes them (``values`` override)."""
    found = []
    for method in methods:
        for index in range(2):
            row: dict[str, object] = {**blank_row(), "unit_id": f"{method}-{index}", "status": "ok"}
            row.update(dataset="babilong_demo", task="qa1", length="1k", sample_id=f"s{index}", model="m")
            row.update(method=method, method_hash=method, target="garden", raw_output="garden")
            row.update(question="Where is Mary?", kept_tokens_final=5, context_tokens=20, run_id="r")
            row.update(values)
            found.append(row)
    return found


def null_rows(field: str) -> list[dict[str, object]]:
    return [{**row, field: None} for row in rows()]


def write_shard(directory: Path, table: pa.Table) -> Path:
    (directory / "results").mkdir(parents=True, exist_ok=True)
    path = directory / "results" / "part-r-00000.parquet"
    pq.write_table(table, path)
    return path


def with_column(name: str, values: pa.Array) -> pa.Table:
    table = pa.Table.from_pylist(rows(), schema=RESULT_SCHEMA)
    return table.set_column(table.schema.get_field_index(name), name, values)


def report(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["report", *args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result
    return result.exit_code, result.output.strip().splitlines()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()
    }


BAD_SHARDS: dict[str, tuple[Callable[[], pa.Table], str]] = {
    "kept tokens as text": (
        lambda: with_column("kept_tokens_final", pa.array(["five"] * 4)),
        "column 'kept_tokens_final' holds string values where laserkv stores int64",
    ),
    "method as a list": (
        lambda: with_column("method", pa.array([[1]] * 4)),
        "column 'method' holds list<element: int64> values where laserkv stores string",
    ),
    "null status": (
        lambda: pa.Table.from_pylist(rows(status=None), schema=NULLABLE),
        "column 'status' is null in 4 of 4 rows",
    ),
    **{
        f"null {field}": (
            lambda field=field: pa.Table.from_pylist(null_rows(field), schema=NULLABLE),  # type: ignore[misc]
            f"4 of 4 rows have no '{field}' (null)",
        )
        for field in ("length", "method", "dataset", "task", "model")
    },
    "null target of an ok row": (
        lambda: pa.Table.from_pylist(rows(target=None), schema=NULLABLE),
        "4 of 4 ok rows have no 'target' (null)",
    ),
    "breakdown not an object": (
        lambda: pa.Table.from_pylist(rows(breakdown="[1, 2]"), schema=RESULT_SCHEMA),
        "a row's 'breakdown' is not a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SHARDS))
def test_a_bad_shard_is_one_line_naming_it_and_its_column(case: str, tmp_path: Path) -> None:
    build, expected = BAD_SHARDS[case]
    run = tmp_path / "run"
    shard = write_shard(run, build())
    before = snapshot(run)
    code, lines = report(str(run), "--out", str(tmp_path / "out"))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and str(shard) in lines[0] and expected in lines[0], lines
    assert snapshot(run) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("[1, 2]", "is not a run manifest: it holds a JSON array, not an object"),
        ('"run"', "is not a run manifest: it holds a JSON string, not an object"),
        (
            '{"run_id": "r", "config": [1]}',
            "is not a run manifest: its 'config' is a JSON array, not an object",
        ),
        ('{"run_id": "r", "versions": "1.0"}', "its 'versions' is a JSON string, not an object"),
        ('{"run_id": ', "is not a readable run manifest: Expecting value"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line_naming_it(
    manifest: str, expected: str, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    write_shard(run, pa.Table.from_pylist(rows(), schema=RESULT_SCHEMA))
    (run / "manifests").mkdir()
    (run / "manifests" / "r.json").write_text(manifest)
    code, lines = report(str(run), "--out", str(tmp_path / "out"))
    assert code == 2 and len(lines) == 1, lines
    assert str(run / "manifests" / "r.json") in lines[0] and expected in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_is_one_line_naming_the_path(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_shard(run, pa.Table.from_pylist(rows(), schema=RESULT_SCHEMA))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, lines = report(str(run), "--out", str(blocker / "report"), "--no-plots")
    assert code == 2 and len(lines) == 1, lines
    assert f"cannot write the report to {blocker / 'report'}: Not a directory" in lines[0], lines
    code, lines = report(str(run), "--out", str(blocker), "--no-plots")
    assert code == 2 and lines == [f"error: --out {blocker} is a file: give a directory for the report"]
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("plots", [True, False])
def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing(
    plots: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    write_shard(run, pa.Table.from_pylist(rows(), schema=RESULT_SCHEMA))
    write_text = pathlib.Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.endswith(".partial"):
            self.touch()  # a partial file is left, as a full disk leaves one
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    out = tmp_path / "new" / "out"
    code, lines = report(str(run), "--out", str(out), *([] if plots else ["--no-plots"]))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == f"error: cannot write the report to {out / 'report.md'}: No space left on device"
    assert not (tmp_path / "new").exists()  # the directories it made (and the plots in them) are gone
    out.mkdir(parents=True)
    (out / "report.md").write_text("the previous report")
    code, lines = report(str(run), "--out", str(out), "--no-plots")
    assert code == 2 and sorted(path.name for path in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "the previous report"


def hostile_run(directory: Path) -> None:
    """Labels, a run id and versions that hold HTML and ``|``."""
    write_shard(directory, pa.Table.from_pylist(rows(("full", SCRIPT, IMAGE, PIPE)), schema=RESULT_SCHEMA))
    (directory / "manifests").mkdir()
    manifest = {"run_id": f"20260101T000000-{SCRIPT}|{IMAGE}", "git_sha": IMAGE, "units_planned": 8,
                "versions": {"torch": SCRIPT, PIPE: IMAGE}}  # fmt: skip
    (directory / "manifests" / "r.json").write_text(json.dumps(manifest))


def table_lines(text: str) -> list[list[str]]:
    """Each Markdown table as its lines (header, rule, rows)."""
    blocks, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def test_labels_run_ids_and_versions_reach_the_markdown_escaped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    hostile_run(run)
    code, lines = report(str(run), "--out", str(tmp_path / "out"), "--no-plots", "--versus", PIPE)
    assert code == 0, lines
    text = (tmp_path / "out" / "report.md").read_text()
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text and "a\\|b" in text
    header = next(line for line in text.splitlines() if line.startswith("- **Runs**"))
    assert "20260101T000000-&lt;script&gt;alert(1)&lt;/script&gt;\\|&lt;img" in header
    tables = table_lines(text)
    assert len(tables) >= 2  # the main table and "a|b against each configuration"
    for table in tables:
        assert {unescaped_pipes(line) for line in table} == {unescaped_pipes(table[0])}, table
    main = tables[0]  # each label whole in its method cell
    assert any("| a\\|b |" in line for line in main) and any(
        f"| {html.escape(SCRIPT)} |" in line for line in main
    )


def test_the_escaped_markdown_renders_as_text(tmp_path: Path) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    run = tmp_path / "run"
    hostile_run(run)
    assert report(str(run), "--out", str(tmp_path / "out"), "--no-plots", "--versus", PIPE)[0] == 0
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")  # raw HTML on
    page = renderer.render((tmp_path / "out" / "report.md").read_text())
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    for table in re.findall(r"<table>.*?</table>", page, flags=re.S):
        header = len(re.findall(r"<th[ >]", table))
        body = re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S)
        assert body and {len(re.findall(r"<td[ >]", row)) for row in body} == {header}
    assert "<td>a|b</td>" in page  # the label, whole, in one cell


def test_the_html_page_escapes_the_same_labels_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    hostile_run(run)
    assert report(str(run), "--out", str(tmp_path / "out"), "--no-plots", "--format", "html")[0] == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "&amp;lt;" not in page
    assert "<li><b>Runs</b>: 20260101T000000-&lt;script&gt;alert(1)&lt;/script&gt;|&lt;img" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_no_script_of_a_label_runs_in_a_browser(tmp_path: Path) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    from playwright.sync_api import sync_playwright

    run = tmp_path / "run"
    hostile_run(run)
    assert report(str(run), "--out", str(tmp_path / "out"), "--no-plots", "--versus", PIPE)[0] == 0
    renderer = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    page_path = tmp_path / "report.html"
    page_path.write_text(renderer.render((tmp_path / "out" / "report.md").read_text()))
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page()

        def dialog_opened(dialog: Any) -> None:  # alert() of a script that ran
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", dialog_opened)
        page.goto(page_path.as_uri())
        page.wait_for_timeout(200)
        assert page.eval_on_selector_all("script, img", "found => found.length") == 0
        browser.close()
    assert dialogs == []
