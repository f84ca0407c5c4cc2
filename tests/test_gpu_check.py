"""scripts/gpu_check.py, dry-run on a CPU with tiny shapes: every section still runs on the current code
and reports its figures (those that need CUDA say so), and one failing section leaves the others alone."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
CUDA_ONLY = {"host_syncs", "lstm_streams"}


def gpu_check(out, *args):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return proc, results


def test_cpu_dry_run_reports_every_section(tmp_path):
    proc, results = gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = results["sections"]
    assert set(sections) == {
        "machine",
        "bench_train",
        "asr_train",
        "step_shapes",
        "host_syncs",
        "profile",
        "lstm_streams",
    }
    for name, record in sections.items():
        expected = "skipped: no CUDA" if name in CUDA_ONLY else "ok"
        assert record["status"] == expected, (name, record)

    assert sections["machine"]["result"]["torch"]
    bench = sections["bench_train"]["result"]
    for path in ("optimized", "baseline"):
        assert bench[path]["steps"] >= 1 and bench[path]["x_real_time"] > 0 and bench[path]["tflops"] > 0
    rows = sections["step_shapes"]["result"]["rows"]
    assert len(rows) >= 3 and all(row["ms"] > 0 and "error" not in row for row in rows)
    assert {row["batch"] % 8 == 0 for row in rows} == {True, False}  # multiples of 8 and others
    profiles = sections["profile"]["result"]
    assert len(profiles) == 2 and all(p["top"] and p["total_ms"] > 0 for p in profiles.values())
    train = sections["asr_train"]["result"]
    assert train["steps"] >= 1 and train["train_loss"] is not None and train["val_wer"] is not None
    assert train["syncs"] == "skipped: no CUDA"

    files = {p.name for p in tmp_path.iterdir()}
    assert {"results.json", "summary.md", "log.txt", "profile.txt", "trace.json.gz", "train_metrics.csv"} <= files
    assert len(files) <= 8
    summary = (tmp_path / "summary.md").read_text()
    for name, record in sections.items():
        assert f"## {name}: {record['status']}" in summary
    assert "| optimized |" in summary and "x_real_time" in summary


def test_a_failing_section_records_its_error_and_the_rest_go_on(tmp_path):
    # A model the config cannot build: the sections that build it fail, the machine section does not.
    proc, results = gpu_check(
        tmp_path, "--only", "machine", "step_shapes", "lstm_streams", "--override", "model.merge=bogus"
    )
    assert proc.returncode == 1
    sections = results["sections"]
    assert sections["machine"]["status"] == "ok"
    assert (
        sections["step_shapes"]["status"].startswith("error: ASRError") and "merge" in sections["step_shapes"]["status"]
    )
    assert "Traceback" in sections["step_shapes"]["output_tail"]
    assert sections["lstm_streams"]["status"] == "skipped: no CUDA"
    assert "## step_shapes: error" in (tmp_path / "summary.md").read_text()
