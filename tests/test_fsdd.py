"""FSDD preparation: digit words, held-out test speaker, deterministic dev split."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data.fsdd import DIGIT_WORDS, prepare_fsdd
from asr.data.manifest import read_manifest
from asr.errors import ASRError

REAL_FSDD = Path(__file__).parents[1] / "../shared/data/fsdd/recordings"
SPEAKERS = ["alice", "bob", "theo"]


@pytest.fixture
def fake_fsdd(tmp_path):
    """3 speakers x 10 digits x 2 takes of short 8 kHz tones named like FSDD."""
    root = tmp_path / "recordings"
    root.mkdir()
    t = np.arange(2400) / 8000
    for speaker in SPEAKERS:
        for digit in range(10):
            for take in range(2):
                tone = 0.2 * np.sin(2 * np.pi * (200 + 50 * digit) * t)
                sf.write(root / f"{digit}_{speaker}_{take}.wav", tone.astype(np.float32), 8000)
    return root


def _quiet(_):
    pass


def test_splits_texts_and_held_out_speaker(fake_fsdd, tmp_path):
    paths = prepare_fsdd(fake_fsdd, tmp_path / "m", dev_fraction=0.25, log=_quiet)
    assert set(paths) == {"train", "dev", "test"}
    split = {name: read_manifest(p) for name, p in paths.items()}
    assert {r["speaker"] for r in split["test"]} == {"theo"}
    assert len(split["test"]) == 20
    assert len(split["dev"]) == 10 and len(split["train"]) == 30  # 25% of the other 40
    for name in ("train", "dev"):
        assert "theo" not in {r["speaker"] for r in split[name]}
    ids = [r["id"] for rows in split.values() for r in rows]
    assert len(ids) == len(set(ids)) == 60  # disjoint and complete
    row = next(r for r in split["test"] if r["id"] == "7_theo_1")
    assert row["text"] == "SEVEN" and row["duration"] == pytest.approx(0.3)
    assert Path(row["audio"]).is_absolute() and Path(row["audio"]).is_file()
    assert all(r["text"] == DIGIT_WORDS[int(r["id"][0])] for rows in split.values() for r in rows)


def test_dev_split_is_deterministic_and_seeded(fake_fsdd, tmp_path):
    def dev_ids(out, seed):
        return [r["id"] for r in read_manifest(prepare_fsdd(fake_fsdd, out, seed=seed, log=_quiet)["dev"])]

    first = dev_ids(tmp_path / "a", 0)
    assert first == dev_ids(tmp_path / "b", 0)
    assert first != dev_ids(tmp_path / "c", 1)
    assert len(first) == 4  # 10% of 40


def test_other_test_speaker_and_errors(fake_fsdd, tmp_path):
    paths = prepare_fsdd(fake_fsdd, tmp_path / "m", test_speaker="bob", log=_quiet)
    assert {r["speaker"] for r in read_manifest(paths["test"])} == {"bob"}
    with pytest.raises(ASRError, match="'nobody' not found"):
        prepare_fsdd(fake_fsdd, tmp_path / "m", test_speaker="nobody", log=_quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ASRError, match="no FSDD recordings"):
        prepare_fsdd(tmp_path / "empty", tmp_path / "m2", log=_quiet)


def test_real_fsdd(tmp_path):
    if not REAL_FSDD.is_dir():
        pytest.skip(f"{REAL_FSDD} not present")
    paths = prepare_fsdd(REAL_FSDD, tmp_path, log=_quiet)
    split = {name: read_manifest(p) for name, p in paths.items()}
    assert sum(len(rows) for rows in split.values()) == 3000
    assert len(split["test"]) == 500
    assert "theo" not in {r["speaker"] for r in split["train"] + split["dev"]}
    assert len({r["speaker"] for r in split["train"]}) == 5
