"""Word times against the synthesizer's true word times, and an hour-long file in bounded memory."""

import json
import resource
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asr.data.manifest import read_manifest
from asr.evaluate import word_time_errors


@pytest.mark.slow
def test_word_boundaries_match_synthesizer_times(aligned_run):
    """Median boundary error <= 80 ms and 90th percentile <= 200 ms against espeak's word times, over
    the words the (briefly trained, x4-subsampled: 40 ms frames) model gets right."""
    from asr.transcribe import load_model

    manifests, best = aligned_run
    rows = read_manifest(manifests["train"])
    errors = []
    for row, result in zip(rows, load_model(best, "cpu").transcribe_many([r["audio"] for r in rows])):
        errors += word_time_errors(result.words, row["words"])
    assert len(errors) >= 2 * 0.3 * sum(len(r["words"]) for r in rows)  # enough words recognised to judge
    assert np.median(errors) <= 0.080
    assert np.percentile(errors, 90) <= 0.200


@pytest.mark.slow
def test_hour_long_file_in_bounded_memory(overfit_run, tiny_corpus, tmp_path):
    """One hour of speech (the corpus' clips over and over) through `asr transcribe --format json` in
    a child process: peak memory under 4 GB, word times monotonic and inside the file."""
    _, best = overfit_run
    clips = [sf.read(r["audio"], dtype="float32")[0] for r in read_manifest(tiny_corpus[1]["train"])]
    gap = np.zeros(8000, dtype=np.float32)
    one_round = np.concatenate([x for c in clips for x in (c, gap)])
    seconds = 3600
    path = tmp_path / "hour.flac"
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(int(seconds * 16000 / len(one_round)) + 1):
            f.write(one_round)
    duration = sf.info(path).duration
    assert duration >= seconds
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asr.cli",
            "transcribe",
            "--checkpoint",
            str(best),
            "--format",
            "json",
            "--device",
            "cpu",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    assert peak_bytes < 4e9
    result = json.loads(proc.stdout)
    starts = [w["start"] for w in result["words"]]
    assert len(starts) > 1000
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= duration + 1e-3 for w in result["words"])
    assert result["words"][-1]["end"] > duration - 60  # the last minutes were transcribed too
