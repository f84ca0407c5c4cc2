"""asr.runs: where a run's checkpoints, snapshots and reports live, and which run a model belongs to."""

from asr import runs


def test_a_models_run_folder(tmp_path):
    run = tmp_path / "run"
    assert runs.run_of(run / "checkpoints" / "best.ckpt") == run
    assert runs.run_of(runs.snapshot_path(run, 1200)) == run
    assert runs.run_of(tmp_path / "elsewhere" / "avg.ckpt") == tmp_path / "elsewhere"  # beside the checkpoint
    assert runs.run_of(tmp_path / "x" / "snapshots" / "a.ckpt") == tmp_path / "x" / "snapshots"  # not a run's
    (tmp_path / "model").mkdir()
    assert runs.run_of(tmp_path / "model") == tmp_path / "model"  # an exported folder
    assert runs.report_dir(run / "checkpoints" / "last.ckpt", "data/ljspeech-385.jsonl") == run / "eval-ljspeech-385"


def test_snapshots_sort_by_step(tmp_path):
    for step in (900, 10_000, 1_200):
        path = runs.snapshot_path(tmp_path, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert [p.name for p in runs.snapshots(tmp_path)] == [
        "step-00000900.ckpt",
        "step-00001200.ckpt",
        "step-00010000.ckpt",
    ]
