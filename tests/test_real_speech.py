"""Real recordings (../shared/data/real-speech): every clip is read, resampled and transcribed without
a failure, whatever its format, rate or channels. The model is trained on 8 synthetic utterances,
so the WER is meaningless here; what is tested is that nothing is lost or crashes."""

import json

import pytest
from conftest import shared_data

from asr.text import normalize

CLIPS = 88


@pytest.fixture(scope="module")
def real_speech():
    return shared_data("real-speech")


@pytest.fixture(scope="module")
def ckpt(overfit_run):
    return overfit_run[1]


def test_evaluate_every_real_clip(real_speech, ckpt, tmp_path, run_cli):
    manifest = [json.loads(line) for line in (real_speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert len(manifest) == CLIPS
    code, out, err = run_cli("evaluate", "--checkpoint", ckpt, "--data", real_speech, "--out", tmp_path)
    assert code == 0, err
    assert "Traceback" not in err and "failed:" not in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed"] == 0, summary["failures"]
    assert summary["utterances"] == CLIPS
    assert summary["words"] == sum(len(normalize(r["text"]).split()) for r in manifest)
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    assert len(rows) == CLIPS and not any("error" in r for r in rows)
    assert {r["audio"] for r in rows} == {str(real_speech / r["audio"]) for r in manifest}
    assert f"({CLIPS} utterances" in out and "0 failed" in out


def test_transcribe_every_real_clip_as_json(real_speech, ckpt, run_cli):
    files = sorted((real_speech / "clips").iterdir())
    assert len(files) == CLIPS
    assert {f.suffix for f in files} == {".wav", ".flac"}
    code, out, err = run_cli("transcribe", "--checkpoint", ckpt, "--format", "json", *files)
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err
    results = [json.loads(line) for line in out.splitlines()]
    # One line per file (printed as each is done: long files come before the batched short ones).
    assert sorted(r["path"] for r in results) == sorted(map(str, files))
    for r in results:
        assert "error" not in r, r
        assert isinstance(r["text"], str) and r["duration"] > 0


def test_evaluate_librispeech_layout_folder(real_speech, ckpt, tmp_path, run_cli):
    folder = real_speech / "LibriSpeech" / "test-samples"
    references = [
        line.split(" ", 1)[1]
        for t in sorted(folder.rglob("*.trans.txt"))
        for line in t.read_text().splitlines()
        if line.strip()
    ]
    assert len(references) == 2
    code, out, err = run_cli("evaluate", "--checkpoint", ckpt, "--data", folder, "--out", tmp_path)
    assert code == 0, err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["utterances"] == 2
    assert summary["words"] == sum(len(r.split()) for r in references)
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["2412-153948-0000", "61-70968-0000"]
