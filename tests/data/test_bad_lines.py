"""--skip-bad-lines: every skipped line (file, line, field, reason) in bad_lines.jsonl, the count in
``removed``, and ``hstu-blair stats`` pointing at the file."""

from __future__ import annotations

import json

from hstu_blair.cli import main
from hstu_blair.data.dataset import BAD_LINES
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import prepare
from hstu_blair.data.summary import format_summary, summarize

CSV = [
    "user_id,item_id,timestamp,rating",
    "alice,10,1614834367,4",
    "alice,11,yesterday,3",  # line 3: timestamp
    "bob,12,1614902400,five",  # line 4: rating
    "bob,13",  # line 5: too few fields
    "bob,1\u200b4,1614902401,2",  # line 6: an invisible character in the id
    "carol,10,1614902402,1",
    "carol,11,tomorrow,1",  # line 8: timestamp again
]


def test_every_skipped_line_is_reported(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("\n".join(CSV) + "\n", encoding="utf-8")
    data = prepare("generic", [path], tmp_path / "out", PrepareOptions(skip_bad_lines=True))
    records = [json.loads(line) for line in (tmp_path / "out" / BAD_LINES).read_text().splitlines()]
    assert sorted((r["file"], r["line"], r["field"]) for r in records) == [
        ("events.csv", 3, "timestamp"),
        ("events.csv", 4, "rating"),
        ("events.csv", 5, "timestamp"),
        ("events.csv", 6, "item_id"),
        ("events.csv", 8, "timestamp"),
    ]
    assert next(r for r in records if r["line"] == 4)["reason"] == "expected a number, found 'five'"
    assert data.manifest["removed"]["source"]["bad_lines:events.csv"] == 5
    by_problem = {"events.csv:item_id": 1, "events.csv:rating": 1, "events.csv:timestamp": 3}
    assert data.manifest["bad_lines"] == {"count": 5, "file": BAD_LINES, "by_problem": by_problem}
    assert "bad lines     5 skipped" in format_summary(summarize(data))
    assert main(["stats", str(tmp_path / "out")]) == 0
    assert f"reason of each in {BAD_LINES}" in capsys.readouterr().out

    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join(CSV[:2] + CSV[6:7]) + "\n", encoding="utf-8")
    again = prepare("generic", [clean], tmp_path / "out", PrepareOptions(skip_bad_lines=True))
    assert not (tmp_path / "out" / BAD_LINES).exists() and "bad_lines" not in again.manifest


def test_missing_skus_and_a_bad_date_each_reported(tmp_path, capsys):
    orders = tmp_path / "orders.csv"
    rows = [
        "customer,sku,ordered_at",
        "c1,A-1,2024-01-02",
        "c1,,2024-01-03",  # line 3: no sku
        "c2,A-2,2024-02-30",  # line 4: no such date
        "c2,,2024-01-05",  # line 5: no sku
        "c3,A-1,2024-01-06",
    ]
    orders.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["-v", "prepare", "generic", "-i", str(orders), "-o", str(out), "--skip-bad-lines"]
    argv += ["--user-col", "customer", "--item-col", "sku", "--time-col", "ordered_at"]
    argv += ["--timestamp-unit", "iso", "--rating-col", "none", "--kcore", "0"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / BAD_LINES).read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in records] == [(3, "sku"), (4, "ordered_at"), (5, "sku")]
    reasons = {r["field"]: r["reason"] for r in records}
    assert reasons["sku"].startswith("missing value") and "2024-02-30" in reasons["ordered_at"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bad_lines"]["by_problem"] == {"orders.csv:ordered_at": 1, "orders.csv:sku": 2}
    printed = capsys.readouterr().out
    for r in records:
        assert f"orders.csv:{r['line']} (field {r['field']!r}): {r['reason']}" in printed
