"""End to end: train on a handful of utterances, then evaluate and transcribe through the CLI."""

import json

import numpy as np
import pytest
import soundfile as sf

from asr.data.manifest import read_manifest


def test_model_overfits_a_handful_of_utterances(overfit_run, tiny_corpus, tmp_path, run_cli):
    _, manifests = tiny_corpus
    _, best = overfit_run
    code, out, _ = run_cli("evaluate", "--checkpoint", best, "--data", manifests["train"], "--out", tmp_path)
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["utterances"] == 8 and summary["failed"] == 0
    assert summary["cer"] < 0.05, summary
    assert "WER" in out


def test_evaluate_writes_per_utterance_report(overfit_run, tiny_corpus, tmp_path, run_cli):
    _, manifests = tiny_corpus
    _, best = overfit_run
    code, _, _ = run_cli("evaluate", "--checkpoint", best, "--data", manifests["test"], "--out", tmp_path)
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    refs = {r["id"]: r["text"] for r in read_manifest(manifests["test"])}
    assert {r["id"] for r in rows} == set(refs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["words"] == sum(len(t.split()) for t in refs.values())
    assert summary["word_errors"] == sum(r["word_errors"] for r in rows)


def test_evaluate_breaks_wer_down_by_a_manifest_field(overfit_run, tiny_corpus, tmp_path, run_cli):
    _, manifests = tiny_corpus
    _, best = overfit_run
    code, out, err = run_cli(
        "evaluate", "--checkpoint", best, "--data", manifests["test"], "--out", tmp_path, "--by", "speaker"
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "utterances.jsonl").read_text().splitlines()]
    speakers = {r["speaker"] for r in read_manifest(manifests["test"])}
    table = summary["by"]["speaker"]
    assert set(table) == speakers
    assert sum(g["words"] for g in table.values()) == summary["words"]
    assert sum(g["wer"] * g["words"] for g in table.values()) == pytest.approx(summary["word_errors"])
    assert out.startswith("WER ") and all(f"speaker {s}: WER" in out for s in speakers)
    assert (tmp_path / "by-speaker.tsv").read_text().count("\n") == len(speakers) + 1
    assert sum(c for *_, c in summary["top_errors"]["substitutions"]) <= sum(r["word_errors"] for r in rows)
    code, _, err = run_cli(
        "evaluate", "--checkpoint", best, "--data", manifests["test"], "--out", tmp_path, "--by", "spekaer"
    )
    assert code == 1 and "--by spekaer: no utterance" in err and "speaker" in err


def test_transcribe_reports_bad_files_and_goes_on(overfit_run, tiny_corpus, tmp_path, run_cli):
    _, manifests = tiny_corpus
    _, best = overfit_run
    good = read_manifest(manifests["train"])[0]
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    code, out, err = run_cli(
        "transcribe",
        "--checkpoint",
        best,
        "--format",
        "json",
        good["audio"],
        not_audio,
        empty,
        tmp_path / "missing.wav",
    )
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 4
    ok = [r for r in results if "error" not in r]
    assert len(ok) == 1 and ok[0]["text"] == good["text"]
    assert "3 of 4 files failed" in err and "Traceback" not in err
    assert any("notes.wav" in r.get("error", "") for r in results)
    code, _, _ = run_cli("transcribe", "--checkpoint", best, "--strict", good["audio"], not_audio)
    assert code == 1
    code, _, err = run_cli("transcribe", "--checkpoint", best, not_audio)
    assert code == 1 and "notes.wav" in err


def test_transcribe_any_rate_and_channels(overfit_run, tiny_corpus, tmp_path, run_cli):
    import librosa

    _, manifests = tiny_corpus
    _, best = overfit_run
    row = read_manifest(manifests["train"])[1]
    audio, sr = sf.read(row["audio"], dtype="float32")
    stereo_44k = librosa.resample(audio, orig_sr=sr, target_sr=44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([stereo_44k, stereo_44k], axis=1), 44100)
    code, out, _ = run_cli("transcribe", "--checkpoint", best, path)
    assert code == 0
    from asr.metrics import error_counts

    errors, _, char_errors, chars = error_counts([row["text"]], [out.strip()])
    assert char_errors / chars < 0.1


def test_long_files_are_windowed_without_losing_or_shifting_frames(overfit_run, tmp_path):
    """Windowing arithmetic: with a frame-local stand-in for the network (each output frame's
    logits come from that frame's own samples), the windowed pass must equal one whole pass
    exactly, so no frame is dropped, duplicated or shifted at window edges."""
    from asr.transcribe import CONTEXT_S, WINDOW_S, load_model

    _, best = overfit_run
    model = load_model(best, "cpu")

    def frame_local_logits(waves):
        out = []
        for w in waves:
            n = -(-len(w) // model.frame_samples)
            frames = np.pad(w, (0, n * model.frame_samples - len(w))).reshape(n, model.frame_samples)
            token = (np.abs(frames).mean(1) * 1000).astype(int) % model.tokenizer.vocab_size
            out.append(np.eye(model.tokenizer.vocab_size, dtype=np.float32)[token])
        return out

    model.emissions = frame_local_logits
    rng = np.random.default_rng(0)
    seconds = 2 * WINDOW_S + CONTEXT_S + 3.3  # three windows, the last one short
    long = (rng.uniform(-0.5, 0.5, int(seconds * 16000)) * np.sin(np.arange(int(seconds * 16000)) / 900)).astype(
        np.float32
    )
    path = tmp_path / "long.wav"
    sf.write(path, long, 16000, subtype="FLOAT")
    windowed = model.long_file_emissions(path)
    whole = frame_local_logits([long])[0]
    assert windowed.shape == whole.shape
    assert np.array_equal(windowed, whole)


@pytest.mark.parametrize("extra", [0, 100])
def test_windowed_file_has_the_whole_files_frame_count(overfit_run, tmp_path, extra):
    """With the real network: a file of a whole number of output frames' samples gets one more frame (the
    centred STFT's last) than the windows made up to their own ends; the last window must keep it."""
    from asr.transcribe import load_model

    model = load_model(overfit_run[1], "cpu")
    wave = (0.01 * np.random.default_rng(0).standard_normal(640 * 640 + extra)).astype(np.float32)  # 25.6 s
    path = tmp_path / "long.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    assert len(model.long_file_emissions(path)) == len(model.emissions([wave])[0])


def test_a_long_file_soundfile_cannot_seek_in_is_still_recognised_window_by_window(overfit_run, tmp_path, monkeypatch):
    """m4a, webm and the like are decoded whole (audioread); the network must still see one window at a
    time, or an hour-long recording would need the memory of one hour-long batch."""
    import asr
    import asr.transcribe as transcribe

    model = transcribe.load_model(overfit_run[1], "cpu")
    wave = (0.01 * np.random.default_rng(1).standard_normal(16000 * 50)).astype(np.float32)  # 50 s: three windows
    path = tmp_path / "long.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    assert transcribe.seekable_seconds(path) == 50.0
    from_file = model.long_file_emissions(path)
    assert np.array_equal(model.windowed_emissions(lambda lo, hi: wave[lo:hi], len(wave)), from_file)
    monkeypatch.setattr(transcribe, "seekable_seconds", lambda p: None)  # as for a file soundfile cannot seek in
    sizes, real = [], model.emissions
    model.emissions = lambda waves: sizes.extend(len(w) for w in waves) or real(waves)
    [result] = model.transcribe_many([path])
    assert not result.error and result.duration == 50.0
    assert len(sizes) == 3 and max(sizes) <= (transcribe.WINDOW_S + 2 * transcribe.CONTEXT_S) * 16000
    assert result.text == model.decoder(asr.DecodingOptions())(from_file).text
    sizes.clear()
    assert model.transcribe(wave).text == result.text and len(sizes) == 3  # the Python API windows a long array too
