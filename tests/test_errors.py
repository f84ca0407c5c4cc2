"""Bad input gets one clear line (`error: FILE: problem`) and a non-zero exit, never a traceback;
in a batch, one bad file is reported and the others go on."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from asr.data.manifest import read_manifest, write_manifest


def run_console(*argv, cwd=None):
    """Run the real console entry point in a fresh interpreter -> CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "asr.cli", *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_line_error(code, err, *needles):
    """Exit 1, exactly one `error:` line, naming every needle (the file, the problem), no traceback."""
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(overfit_run):
    return overfit_run[1]


@pytest.fixture(scope="module")
def good_audio(tiny_corpus):
    return read_manifest(tiny_corpus[1]["train"])[0]["audio"]


# ---------------------------------------------------------------------------- checkpoints


class RunsCode:
    """Unpickling this calls os.system: a checkpoint holding it must never be loaded."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def bad_checkpoints(ckpt, tmp_path_factory):
    """name -> (path, words the error must contain)."""
    d = tmp_path_factory.mktemp("bad-ckpts")
    (d / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "notes.ckpt").write_text("these are my notes, not a model\n")
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, d / "plain.ckpt")
    vocab = torch.load(ckpt, map_location="cpu", weights_only=True)
    vocab["asr"]["tokenizer"]["chars"] = " ABC"
    torch.save(vocab, d / "vocab.ckpt")
    shape = torch.load(ckpt, map_location="cpu", weights_only=True)  # the model's description, not its weights
    shape["asr"]["dims"]["hidden"] = 32
    torch.save(shape, d / "config.ckpt")
    old = torch.load(ckpt, map_location="cpu", weights_only=True)
    old["asr"]["format"] = 1
    torch.save(old, d / "old.ckpt")
    unversioned = torch.load(ckpt, map_location="cpu", weights_only=True)
    del unversioned["asr"]["format"]
    torch.save(unversioned, d / "unversioned.ckpt")
    return {
        "missing": (d / "missing.ckpt", ["checkpoint not found"]),
        "random bytes": (d / "random.ckpt", ["not a PyTorch checkpoint"]),
        "text file": (d / "notes.ckpt", ["not a PyTorch checkpoint"]),
        "plain dict": (d / "plain.ckpt", ["not an asr checkpoint"]),
        "vocabulary differs": (d / "vocab.ckpt", ["tokenizer/vocabulary mismatch", "has 5 tokens"]),
        "model config differs": (d / "config.ckpt", ["do not match the model", "size mismatch", "lstm"]),
        "older format": (d / "old.ckpt", ["checkpoint format 1 is not one this version of asr reads (2, 3)"]),
        "no format": (
            d / "unversioned.ckpt",
            ["checkpoint format None is not one this version of asr reads (2, 3)"],
        ),
    }


CHECKPOINT_CASES = [
    "missing",
    "random bytes",
    "text file",
    "plain dict",
    "vocabulary differs",
    "model config differs",
    "older format",
    "no format",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_transcribe_bad_checkpoint(case, bad_checkpoints, good_audio, run_cli):
    path, words = bad_checkpoints[case]
    code, out, err = run_cli("transcribe", "--checkpoint", path, good_audio)
    assert_one_line_error(code, err, path, *words)
    assert out == ""


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_evaluate_bad_checkpoint(case, bad_checkpoints, tiny_corpus, tmp_path, run_cli):
    path, words = bad_checkpoints[case]
    code, _, err = run_cli(
        "evaluate", "--checkpoint", path, "--data", tiny_corpus[1]["test"], "--out", tmp_path / "eval"
    )
    assert_one_line_error(code, err, path, *words)
    assert not (tmp_path / "eval").exists()


def test_a_format_2_checkpoint_is_read_as_the_same_model(ckpt, good_audio, tmp_path):
    """Format 2 held ModelDims' fields as model_args {"frontend", "network"}: it loads, and transcribes the same."""
    import asr
    from asr.checkpoint import read_checkpoint

    old = torch.load(ckpt, map_location="cpu", weights_only=True)
    dims = old["asr"].pop("dims")
    frontend = {k: dims.pop(k) for k in ("n_mels", "dynamic_range_db", "taper_ms", "edge_pad_ms", "normalize")}
    old["asr"].update(format=2, model_args={"frontend": frontend, "network": dims})
    torch.save(old, tmp_path / "v2.ckpt")
    assert read_checkpoint(tmp_path / "v2.ckpt")["asr"]["dims"] == read_checkpoint(ckpt)["asr"]["dims"]
    assert (
        asr.load_model(tmp_path / "v2.ckpt", "cpu").transcribe(good_audio).text
        == asr.load_model(ckpt, "cpu").transcribe(good_audio).text
    )


def test_checkpoint_that_would_run_code_is_refused(ckpt, good_audio, tiny_corpus, tmp_path, run_cli):
    marker = tmp_path / "MARKER"
    evil = torch.load(ckpt, map_location="cpu", weights_only=True)
    evil["callbacks"] = {"x": RunsCode(f"touch {marker}")}
    torch.save(evil, tmp_path / "evil.ckpt")

    # The real console script: exit 1, one line on stderr, no traceback, and nothing ran.
    proc = run_console("transcribe", "--checkpoint", tmp_path / "evil.ckpt", good_audio, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert str(tmp_path / "evil.ckpt") in proc.stderr and "refusing to load" in proc.stderr
    assert "system" in proc.stderr  # names what it would have called
    assert "weights_only" not in proc.stderr  # torch's advice to load it unsafely is not passed on
    assert proc.stdout == ""

    code, _, err = run_cli(
        "evaluate", "--checkpoint", tmp_path / "evil.ckpt", "--data", tiny_corpus[1]["test"], "--out", tmp_path / "eval"
    )
    assert_one_line_error(code, err, tmp_path / "evil.ckpt", "refusing to load")
    assert not marker.exists()

    # `asr train --resume` on a run whose last.ckpt was swapped for it: refused before Lightning loads it
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes((tmp_path / "evil.ckpt").read_bytes())
    config = tmp_path / "resume.yaml"
    config.write_text(
        f"out_dir: {run_dir}\ndata: {{train: {tiny_corpus[1]['train']}, val: {tiny_corpus[1]['train']}}}\n"
    )
    code, _, err = run_cli("train", "--config", config, "--resume")
    assert_one_line_error(code, err, run_dir / "checkpoints" / "last.ckpt", "refusing to load")
    assert not marker.exists()

    # The payload is live: an unsafe load does run it (so the checks above could fail).
    torch.load(tmp_path / "evil.ckpt", map_location="cpu", weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------- audio


def _tone(seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory):
    """name -> path of a file that is not usable audio."""
    d = tmp_path_factory.mktemp("bad-audio")
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.wav").write_text("this is a text file, not a recording\n")
    sf.write(d / "ten.wav", np.zeros(10, np.float32), 16000)
    nan = _tone(1.0)
    nan[4000:4010] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    long_nan = _tone(30.0)  # past the windowing threshold: read window by window, not by load_audio
    long_nan[16000] = np.nan
    sf.write(d / "long-nan.wav", long_nan, 16000, subtype="FLOAT")
    sf.write(d / "whole.flac", _tone(2.0), 16000, format="FLAC")
    data = (d / "whole.flac").read_bytes()
    (d / "truncated.flac").write_bytes(data[: len(data) // 2])
    return {
        "missing": d / "missing.wav",
        "empty": d / "empty.wav",
        "text named .wav": d / "notes.wav",
        "10 samples": d / "ten.wav",
        "NaN": d / "nan.wav",
        "NaN in a long file": d / "long-nan.wav",
        "truncated FLAC": d / "truncated.flac",
    }


# What each must say if it fails (the truncated FLAC may also decode partially and transcribe).
AUDIO_PROBLEMS = {
    "missing": "not found",
    "empty": "empty",
    "text named .wav": "not a readable audio file",
    "10 samples": "too short",
    "NaN": "NaN",
    "NaN in a long file": "NaN",
    "truncated FLAC": None,
}


@pytest.mark.parametrize("case", list(AUDIO_PROBLEMS))
def test_transcribe_one_bad_audio_file(case, bad_audio, ckpt, run_cli):
    path = bad_audio[case]
    code, out, err = run_cli("transcribe", "--checkpoint", ckpt, "--format", "json", path)
    assert "Traceback" not in err
    [result] = [json.loads(line) for line in out.splitlines()]
    assert result["path"] == str(path)
    if "error" not in result and AUDIO_PROBLEMS[case] is None:  # decoded what was there
        assert code == 0 and isinstance(result["text"], str) and not error_lines(err)
        return
    line = assert_one_line_error(code, err, path, AUDIO_PROBLEMS[case] or "")
    assert line == f"error: {result['error']}" and "\n" not in result["error"]


def test_transcribe_batch_reports_each_bad_file_and_goes_on(bad_audio, ckpt, good_audio, tiny_corpus, run_cli):
    good = read_manifest(tiny_corpus[1]["train"])[0]
    files = [bad_audio[c] for c in AUDIO_PROBLEMS] + [good_audio]
    code, out, err = run_cli("transcribe", "--checkpoint", ckpt, "--format", "json", *files)
    assert code == 0, err  # some files worked: the command as a whole did not fail
    assert "Traceback" not in err
    results = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["path"] for r in results) == sorted(map(str, files))  # one line per file
    by_path = {r["path"]: r for r in results}
    assert by_path[str(good_audio)]["text"] == good["text"] and "error" not in by_path[str(good_audio)]
    failed = [r for r in results if "error" in r]
    for case, problem in AUDIO_PROBLEMS.items():
        if problem:
            assert problem in by_path[str(bad_audio[case])]["error"], case
    for r in failed:
        assert r["error"].startswith(f"{r['path']}: ") and f"error: {r['error']}" in err.splitlines()
    assert len(error_lines(err)) == len(failed) >= len(AUDIO_PROBLEMS) - 1
    assert f"{len(failed)} of {len(files)} files failed" in err
    code, _, _ = run_cli("transcribe", "--checkpoint", ckpt, "--strict", good_audio, bad_audio["empty"])
    assert code == 1


def test_a_failure_inside_a_batch_loses_only_its_own_file(ckpt, tiny_corpus):
    """The network or decoder failing on one file of a batch (say, out of memory on the longest) used to
    lose every file of that batch; now the batch is retried file by file and only that one fails."""
    from asr.audio import load_audio
    from asr.transcribe import load_model

    paths = [row["audio"] for row in read_manifest(tiny_corpus[1]["train"])[:3]]
    model = load_model(ckpt, "cpu")
    bad_length = len(load_audio(paths[1]))
    real, calls = model.emissions, []

    def breaks_on_one(waves):
        calls.append(len(waves))
        if any(len(w) == bad_length for w in waves):
            raise RuntimeError("CUDA out of memory")
        return real(waves)

    model.emissions = breaks_on_one
    results = model.transcribe_many(paths)
    assert calls[0] == 3  # the three short files went in one batch first
    assert [bool(r.error) for r in results] == [False, True, False], [r.error for r in results]
    assert results[1].error == f"{paths[1]}: RuntimeError: CUDA out of memory"
    assert all(r.text for r in (results[0], results[2]))


def test_transcribe_output_dir_refuses_two_inputs_with_one_name(ckpt, good_audio, tmp_path, run_cli):
    import shutil

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(good_audio, tmp_path / sub / "clip.flac")
    code, _, err = run_cli(
        "transcribe",
        "--checkpoint",
        ckpt,
        "--output-dir",
        tmp_path / "out",
        tmp_path / "a" / "clip.flac",
        tmp_path / "b" / "clip.flac",
    )
    assert_one_line_error(code, err, tmp_path / "b" / "clip.flac", "same name as", tmp_path / "a" / "clip.flac")
    assert not (tmp_path / "out").exists()


def test_transcribe_a_folder_with_unreadable_files(bad_audio, ckpt, good_audio, tmp_path, run_cli):
    import shutil

    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    for case in ("empty", "text named .wav", "10 samples", "NaN"):
        shutil.copy(bad_audio[case], folder / bad_audio[case].name)
    shutil.copy(good_audio, folder / "sub" / "good.flac")
    (folder / "README.txt").write_text("not audio, not picked up")
    code, out, err = run_cli("transcribe", "--checkpoint", ckpt, folder)
    assert code == 0 and "Traceback" not in err
    assert out.splitlines()[-1].startswith(f"{folder / 'sub' / 'good.flac'}\t")  # the rest finished
    tail = err.splitlines()[-5:]  # the failures are listed again at the end
    assert tail[0] == "4 of 5 files failed:" and all(line.startswith(f"  {folder}") for line in tail[1:])
    code, _, _ = run_cli("transcribe", "--checkpoint", ckpt, "--strict", folder)
    assert code == 1


def test_evaluate_reports_bad_rows_and_scores_the_rest(bad_audio, ckpt, tiny_corpus, tmp_path, run_cli):
    rows = read_manifest(tiny_corpus[1]["train"])[:2]
    rows += [
        {"id": "missing", "audio": str(bad_audio["missing"]), "text": "HELLO"},
        {"id": "nan", "audio": str(bad_audio["NaN"]), "text": "HELLO"},
    ]
    manifest = write_manifest(tmp_path / "mixed.jsonl", rows)
    code, out, err = run_cli("evaluate", "--checkpoint", ckpt, "--data", manifest, "--out", tmp_path / "ev")
    assert code == 0 and "Traceback" not in err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["utterances"] == 2 and summary["failed"] == 2
    assert any(str(bad_audio["missing"]) in f and "not found" in f for f in summary["failures"])
    assert any(str(bad_audio["NaN"]) in f and "NaN" in f for f in summary["failures"])
    assert "2 failed" in out
    code, _, _ = run_cli("evaluate", "--checkpoint", ckpt, "--data", manifest, "--out", tmp_path / "ev2", "--strict")
    assert code == 1


def test_evaluate_with_nothing_to_score_fails_instead_of_printing_0_percent(
    bad_audio, ckpt, tiny_corpus, tmp_path, run_cli
):
    good = read_manifest(tiny_corpus[1]["train"])[0]
    rows = [{"id": "missing", "audio": str(bad_audio["missing"]), "text": "HELLO"}, {**good, "text": "..."}]
    manifest = write_manifest(tmp_path / "nothing.jsonl", rows)
    code, out, err = run_cli("evaluate", "--checkpoint", ckpt, "--data", manifest, "--out", tmp_path / "ev")
    assert_one_line_error(code, err, manifest, "nothing to score", "1 failed to load", "1 with no words")
    assert "WER" not in out
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["wer"] is None  # written, not faked as 0


# ---------------------------------------------------------------------------- evaluate --data


def _eval_data_cases(tmp_path):
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "malformed.jsonl").write_text('{"audio": "a.wav", "text": "A"}\n{"audio": "b.wav", "text": \n')
    (tmp_path / "number.jsonl").write_text('{"audio": "a.wav", "text": 42}\n')
    return {
        "empty directory": (tmp_path / "empty-dir", ["no LibriSpeech transcripts"]),
        "nonexistent path": (tmp_path / "nowhere", ["no such manifest or folder"]),
        "empty manifest": (tmp_path / "empty.jsonl", ["manifest is empty"]),
        "malformed line": (tmp_path / "malformed.jsonl", [":2:", "not a manifest row"]),
        "text not a string": (tmp_path / "number.jsonl", ["text is int"]),
    }


@pytest.mark.parametrize(
    "case", ["empty directory", "nonexistent path", "empty manifest", "malformed line", "text not a string"]
)
def test_evaluate_bad_data(case, ckpt, tmp_path, run_cli):
    path, words = _eval_data_cases(tmp_path)[case]
    code, out, err = run_cli("evaluate", "--checkpoint", ckpt, "--data", path, "--out", tmp_path / "ev")
    assert_one_line_error(code, err, path, *words)
    assert "WER" not in out and not (tmp_path / "ev").exists()


def test_evaluate_bad_data_console_script(ckpt, tmp_path):
    proc = run_console("evaluate", "--checkpoint", ckpt, "--data", tmp_path / "nowhere", "--out", tmp_path / "ev")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr == f"error: {tmp_path / 'nowhere'}: no such manifest or folder\n"


# ---------------------------------------------------------------------------- prepare


def test_prepare_empty_subset_folder(tmp_path, run_cli):
    (tmp_path / "subset").mkdir()
    code, _, err = run_cli("prepare", "librispeech", "--root", tmp_path, "--subsets", tmp_path / "subset")
    assert_one_line_error(code, err, tmp_path / "subset", "no LibriSpeech transcripts")
    assert not (tmp_path / "manifests").exists()


def test_prepare_unknown_subset_lists_valid_names(tmp_path, run_cli):
    code, _, err = run_cli("prepare", "librispeech", "--root", tmp_path, "--subsets", "not-a-subset")
    line = assert_one_line_error(code, err, "not-a-subset", "valid names")
    for name in (
        "dev-clean",
        "dev-other",
        "test-clean",
        "test-other",
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
    ):
        assert name in line


# ---------------------------------------------------------------------------- train


def _train_config(tmp_path, tiny_corpus, train_rows, **extra) -> str:
    manifest = write_manifest(tmp_path / "train.jsonl", train_rows)
    config = {
        "out_dir": str(tmp_path / "run"),
        "data": {"train": str(manifest), "val": str(tiny_corpus[1]["dev"]), "num_workers": 0},
        "model": {"hidden": 16, "layers": 1},
        "trainer": {
            "max_epochs": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _bad_rows(tiny_corpus):
    good = read_manifest(tiny_corpus[1]["train"])
    return [
        {**good[0], "id": "digits", "text": "ROOM 101 IS OPEN"},  # digits: not in the A-Z ' vocabulary
        {**good[1], "id": "too-long", "text": "A B " * 400},  # 800 tokens for a few seconds of audio
    ]


def test_train_missing_config(tmp_path, run_cli):
    code, _, err = run_cli("train", "--config", tmp_path / "nope.yaml")
    assert_one_line_error(code, err, tmp_path / "nope.yaml", "config not found")


def test_train_unknown_config_section(tmp_path, run_cli):
    path = tmp_path / "typo.yaml"
    path.write_text("modle:\n  hidden: 16\n")
    code, _, err = run_cli("train", "--config", path)
    assert_one_line_error(code, err, path, "unknown key 'modle' (did you mean 'model'?)")


def test_train_skips_unusable_rows_and_says_why(tiny_corpus, tmp_path, run_cli, caplog):
    rows = read_manifest(tiny_corpus[1]["train"]) + _bad_rows(tiny_corpus)
    config = _train_config(tmp_path, tiny_corpus, rows)
    caplog.set_level(logging.INFO, logger="asr")
    code, out, err = run_cli("train", "--config", config)
    assert code == 0, err
    assert "Traceback" not in err and not error_lines(err)
    assert "best checkpoint:" in out and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    skipped = [r.getMessage() for r in caplog.records if r.name == "asr" and "skipped" in r.getMessage()]
    assert len(skipped) == 1, skipped
    assert "skipped 2 of 10 utterances" in skipped[0]
    assert "1 characters outside the vocabulary" in skipped[0]
    assert "1 label longer than the subsampled frames" in skipped[0]
    assert any(r.name == "asr" and "train: 8 utterances" in r.getMessage() for r in caplog.records)


def test_train_with_only_unusable_rows_fails_cleanly(tiny_corpus, tmp_path, run_cli):
    config = _train_config(tmp_path, tiny_corpus, _bad_rows(tiny_corpus))
    code, _, err = run_cli("train", "--config", config)
    assert_one_line_error(
        code,
        err,
        tmp_path / "train.jsonl",
        "no usable utterances",
        "characters outside the vocabulary",
        "label longer than the subsampled frames",
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def _unreadable(rows, tmp_path):
    return [{**row, "audio": str(tmp_path / f"gone-{i}.flac")} for i, row in enumerate(rows)]


def test_train_whose_audio_is_all_unreadable_fails_instead_of_training_nothing(tiny_corpus, tmp_path, run_cli, caplog):
    """The manifest is fine, but every file it names is gone: each is reported, then the run fails (it used
    to 'finish' with no step trained)."""
    config = _train_config(tmp_path, tiny_corpus, _unreadable(read_manifest(tiny_corpus[1]["train"]), tmp_path))
    caplog.set_level(logging.WARNING, logger="asr")
    code, _, err = run_cli("train", "--config", config)
    assert any("gone-0.flac: audio file not found" in r.getMessage() for r in caplog.records)
    assert_one_line_error(code, err, tmp_path / "train.jsonl", "no training audio could be read")


def test_train_whose_validation_audio_is_all_unreadable_fails_instead_of_scoring_0_percent(
    tiny_corpus, tmp_path, run_cli
):
    """A WER of 0 errors in 0 words used to be logged as 0.0% and kept as the best checkpoint."""
    val = write_manifest(tmp_path / "val.jsonl", _unreadable(read_manifest(tiny_corpus[1]["dev"]), tmp_path))
    config = _train_config(tmp_path, tiny_corpus, read_manifest(tiny_corpus[1]["train"]))
    code, _, err = run_cli("train", "--config", config, f"data.val={val}")
    assert_one_line_error(code, err, val, "no validation utterance could be scored")
    assert not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
