"""bench/bench_step.py builds configs as `train` does and reports their step times as ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config(path: Path, out_dir: Path, fusion: str, store: Path | None = None) -> Path:
    text = f'[text]\nembeddings = "{store}"\n' if store else ""
    path.write_text(
        f'name = "{path.stem}"\nout_dir = "{out_dir}"\n'
        "[data]\nmax_len = 10\n"
        f'[model]\nname = "sasrec"\nd_model = 16\nd_qk = 16\nd_v = 16\nffn_dim = 16\nfusion = "{fusion}"\n'
        "[train]\nbatch_size = 16\nnum_negatives = 16\n" + text
    )
    return path


def test_bench_step_reports_ratios_to_the_first_config(tiny_dataset, tiny_text_store, tmp_path):
    ids = _config(tmp_path / "id.toml", tmp_path, "id")
    text = _config(tmp_path / "text.toml", tmp_path, "sum", tiny_text_store)
    out = tmp_path / "step.json"
    command = [sys.executable, str(ROOT / "bench" / "bench_step.py"), "--data", str(tiny_dataset)]
    command += [str(ids), f"{text}::model.fusion_options.text_rank=4", "--rounds", "2", "--steps", "2"]
    proc = subprocess.run(
        [*command, "--warmup", "1", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["config"] for r in rows] == [str(ids), f"{text}::model.fusion_options.text_rank=4"]
    assert rows[0]["ratio"] == 1.0 and rows[1]["ms_per_step"] > 0 and len(rows[1]["rounds_ms"]) == 2
    assert "CPU:" in proc.stdout and "x first" in proc.stdout
