"""Kaldi data directories: paths, piped entries refused, segments cut out, missing audio counted."""

import json

import numpy as np
import pytest
import soundfile as sf

from asr.data.kaldi import read_kaldi_dir
from asr.errors import ASRError


def _wav(path, seconds, freq=220.0, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def _write(folder, **tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in tables.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines))
    return folder


def test_paths_relative_to_root_and_absolute(tmp_path):
    corpus = tmp_path / "corpus"
    _wav(corpus / "audio" / "a.wav", 0.5)
    absolute = _wav(tmp_path / "elsewhere" / "b.wav", 0.75)
    data = _write(
        corpus / "data" / "train",
        **{
            "wav.scp": ["uttA audio/a.wav", f"uttB\t{absolute}"],
            "text": ["uttA hello, world!", "uttB it's ok"],
            "utt2spk": ["uttA spk1", "uttB spk2"],
            "spk2gender": ["spk1 f", "spk2 m"],
            "spk2age": ["spk1 9", "spk2 31"],
        },
    )
    rows = read_kaldi_dir(data, root=corpus, log=lambda _: None)
    assert [r["id"] for r in rows] == ["uttA", "uttB"]
    assert rows[0]["audio"] == str((corpus / "audio" / "a.wav").resolve())
    assert rows[1]["audio"] == str(absolute)
    assert rows[0]["text"] == "HELLO WORLD" and rows[1]["text"] == "IT'S OK"
    assert [r["duration"] for r in rows] == pytest.approx([0.5, 0.75])
    assert (rows[0]["speaker"], rows[0]["gender"], rows[0]["age"]) == ("spk1", "f", 9)
    assert (rows[1]["speaker"], rows[1]["gender"], rows[1]["age"]) == ("spk2", "m", 31)


def test_piped_entry_is_refused_never_run(tmp_path):
    marker = tmp_path / "ran"
    data = _write(tmp_path / "d", **{"wav.scp": ["u1 a.wav", f"u2 touch {marker} |"], "text": ["u1 A", "u2 B"]})
    with pytest.raises(ASRError, match=r"wav\.scp: u2: piped command refused") as e:
        read_kaldi_dir(data, root=tmp_path, log=lambda _: None)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_cli_refuses_a_pipe_in_one_line(tmp_path, run_cli):
    data = _write(tmp_path / "d", **{"wav.scp": ["u1 sph2pipe -f wav x.sph |"], "text": ["u1 A"]})
    code, _, err = run_cli("prepare", "kaldi", data, "--out", tmp_path / "m.jsonl")
    assert code == 1 and err.count("\n") == 1 and "piped command refused" in err
    assert not (tmp_path / "m.jsonl").exists()


def test_segments_are_cut_out_of_their_recordings(tmp_path, run_cli):
    sr = 16000
    t = np.arange(3 * sr) / sr
    recording = (0.2 * np.sin(2 * np.pi * 200 * t) * (1 + t)).astype(np.float32)  # a different level each second
    sf.write(tmp_path / "rec1.wav", recording, sr)
    data = _write(
        tmp_path / "d",
        **{
            "wav.scp": ["rec1 rec1.wav"],
            "segments": ["s1 rec1 0.0 1.0", "s2 rec1 1.5 2.25", "s3 rec1 2.5 -1", "s4 rec9 0 1"],
            "text": ["s1 ONE", "s2 TWO", "s3 THREE", "s4 FOUR"],
        },
    )
    out = tmp_path / "out" / "train.jsonl"
    code, stdout, err = run_cli("prepare", "kaldi", data, "--out", out, "--root", tmp_path)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["s1", "s2", "s3"]
    assert [r["duration"] for r in rows] == pytest.approx([1.0, 0.75, 0.5])
    for row, (lo, hi) in zip(rows, [(0, sr), (24000, 36000), (40000, 48000)]):
        clip, clip_sr = sf.read(row["audio"], dtype="float32")
        assert clip_sr == sr and row["audio"].startswith(str((tmp_path / "out" / "train-segments").resolve()))
        np.testing.assert_allclose(clip, recording[lo:hi], atol=1e-4)  # FLAC at 16 bits
    assert "skipped 1 of 4 utterances: 1 no audio entry" in err + stdout


def test_missing_and_unreadable_audio_are_skipped_and_counted(tmp_path):
    _wav(tmp_path / "good.wav", 0.5)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all" * 10)
    data = _write(
        tmp_path / "d",
        **{
            "wav.scp": ["a good.wav", "b missing.wav", "c broken.wav", "d good.wav"],
            "text": ["a FINE", "b GONE", "c BAD", "d", "e NO AUDIO"],
        },
    )
    logs = []
    rows = read_kaldi_dir(data, root=tmp_path, log=logs.append)
    assert [r["id"] for r in rows] == ["a"]
    summary = next(line for line in logs if "skipped" in line)
    assert "skipped 4 of 5 utterances" in summary
    for kind in ("1 missing audio", "1 unreadable", "1 no transcript", "1 no audio entry"):
        assert kind in summary


def test_not_a_kaldi_directory(tmp_path):
    with pytest.raises(ASRError, match="not a Kaldi data directory"):
        read_kaldi_dir(tmp_path, log=lambda _: None)
    data = _write(tmp_path / "d", **{"wav.scp": ["a x.wav", "a y.wav"], "text": ["a HI"]})
    with pytest.raises(ASRError, match=r"wav\.scp:2: a is listed twice"):
        read_kaldi_dir(data, log=lambda _: None)
