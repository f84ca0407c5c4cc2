"""`asr transcribe` formats, `asr tune-lm`, decoding settings (--decoding), `asr prepare lm`."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from asr.data import lm as lm_files
from asr.data.manifest import read_manifest
from asr.errors import ASRError


@pytest.fixture(scope="module")
def train_arpa(tiny_corpus, tmp_path_factory) -> Path:
    from asr.ngram import build_arpa

    return build_arpa([tiny_corpus[1]["train"]], tmp_path_factory.mktemp("lm") / "train.arpa", order=3)[0]


@pytest.mark.slow
def test_transcribe_formats(overfit_run, tiny_corpus, run_cli, tmp_path):
    _, best = overfit_run
    clips = [r["audio"] for r in read_manifest(tiny_corpus[1]["train"])][:2]
    code, out, _ = run_cli("transcribe", "--checkpoint", best, "--format", "json", *clips)
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in results] == [str(Path(c)) for c in clips]  # input order
    assert " ".join(w["word"] for w in results[0]["words"]) == results[0]["text"]
    code, srt, _ = run_cli("transcribe", "--checkpoint", best, "--format", "srt", clips[0])
    assert code == 0 and srt.startswith("1\n00:00:0") and " --> " in srt
    code, _, err = run_cli("transcribe", "--checkpoint", best, "--format", "vtt", *clips)
    assert code == 1 and "--output-dir" in err
    code, _, _ = run_cli("transcribe", "--checkpoint", best, "--format", "vtt", "--output-dir", tmp_path, *clips)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{Path(c).stem}.vtt" for c in clips)
    assert (tmp_path / f"{Path(clips[0]).stem}.vtt").read_text().startswith("WEBVTT\n")


@pytest.mark.slow
def test_beam_with_training_lm_and_tune_lm(overfit_run, tiny_corpus, train_arpa, run_cli, tmp_path):
    _, best = overfit_run
    train = tiny_corpus[1]["train"]
    code, out, _ = run_cli(
        "evaluate",
        "--checkpoint",
        best,
        "--data",
        train,
        "--out",
        tmp_path / "ev",
        "--lm",
        train_arpa,
        "--lm-weight",
        "0.5",
    )
    assert code == 0 and out.startswith("WER ")
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["cer"] < 0.1  # the overfit model with an LM of its own sentences
    settings = tmp_path / "decoding.yaml"
    code, out, _ = run_cli(
        "tune-lm",
        "--checkpoint",
        best,
        "--data",
        train,
        "--lm",
        train_arpa,
        "--lm-weights",
        "0.5,1",
        "--word-scores",
        "0,1",
        "--beam-size",
        "8",
        "--out",
        settings,
    )
    assert code == 0 and "best: lm_weight" in out
    assert "lm_weight:" in settings.read_text() and str(train_arpa) in settings.read_text()
    import yaml

    from asr.decoding import DecodingOptions

    saved = yaml.safe_load(settings.read_text())
    assert DecodingOptions.load(settings) == DecodingOptions(
        decoder="beam",
        beam_size=8,
        lm=str(Path(train_arpa).resolve()),
        lexicon=None,
        lm_weight=saved["lm_weight"],
        word_score=saved["word_score"],
    )
    assert saved["lm_weight"] in (0.5, 1) and saved["word_score"] in (0, 1)


@pytest.mark.slow
def test_decoding_yaml_is_used_only_when_given_with_decoding(
    overfit_run, tiny_corpus, train_arpa, run_cli, tmp_path, monkeypatch
):
    """A decoding.yaml beside the checkpoint is not picked up by itself (greedy, the default, is used): only
    `--decoding FILE` applies it, and decoder flags given with it override its values."""
    import asr.transcribe
    from asr.decoding import DecodingOptions

    _, best = overfit_run
    train = tiny_corpus[1]["train"]
    ckpt = tmp_path / "copy" / "best.ckpt"
    ckpt.parent.mkdir()
    shutil.copy(best, ckpt)
    settings = ckpt.parent / "decoding.yaml"
    code, _, _ = run_cli(
        "tune-lm",
        "--checkpoint",
        ckpt,
        "--data",
        train,
        "--lm",
        train_arpa,
        "--lm-weights",
        "0.5,1",
        "--word-scores",
        "0,1",
        "--beam-size",
        "8",
    )
    assert code == 0 and settings.is_file()  # written next to the checkpoint by default
    used = []
    real = asr.transcribe.Model.decoder
    monkeypatch.setattr(
        asr.transcribe.Model, "decoder", lambda self, options: used.append(options) or real(self, options)
    )
    clip = read_manifest(train)[0]["audio"]

    for command in (
        ["transcribe", "--checkpoint", ckpt, clip],
        ["evaluate", "--checkpoint", ckpt, "--data", train, "--out", tmp_path / "greedy"],
    ):
        used.clear()
        code, _, err = run_cli(*command)
        assert code == 0, err
        assert used and all(not o.beam and o.lm is None and o.decoder is None for o in used)  # greedy
    for command in (
        ["transcribe", "--checkpoint", ckpt, "--decoding", settings, clip],
        ["evaluate", "--checkpoint", ckpt, "--data", train, "--out", tmp_path / "tuned", "--decoding", settings],
    ):
        used.clear()
        code, _, err = run_cli(*command)
        assert code == 0, err
        assert used and all(o.beam and o.lm == str(Path(train_arpa).resolve()) and o.beam_size == 8 for o in used)
    summary = json.loads((tmp_path / "tuned" / "summary.json").read_text())
    assert summary["cer"] < 0.1
    used.clear()
    code, _, err = run_cli(
        "transcribe", "--checkpoint", ckpt, "--decoding", settings, "--lm-weight", "0.25", "--beam-size", "4", clip
    )
    assert code == 0, err
    assert used[-1].beam and used[-1].lm_weight == 0.25 and used[-1].beam_size == 4  # flags beat the file
    assert used[-1].word_score == DecodingOptions.load(settings).word_score  # the rest is the file's
    used.clear()
    code, _, err = run_cli("transcribe", "--checkpoint", ckpt, "--decoding", settings, "--decoder", "greedy", clip)
    assert code == 0, err
    assert not used[-1].beam and used[-1].lm is None  # --decoder greedy drops the file's LM with its beam
    code, _, err = run_cli("transcribe", "--checkpoint", ckpt, "--decoding", tmp_path / "missing.yaml", clip)
    assert code == 1 and "decoding settings not found" in err


def test_bad_lm_on_the_command_line_fails_before_decoding(overfit_run, tiny_corpus, run_cli, tmp_path):
    _, best = overfit_run
    junk = tmp_path / "junk.arpa"
    junk.write_text("not an lm\n")
    code, _, err = run_cli("evaluate", "--checkpoint", best, "--data", tiny_corpus[1]["train"], "--lm", junk)
    assert code == 1 and err.startswith(f"error: {junk}: not a language model") and err.count("\n") == 1


def test_tune_lm_with_no_transcripts_fails_instead_of_tuning_on_0_words(
    overfit_run, tiny_corpus, train_arpa, run_cli, tmp_path
):
    from asr.data.manifest import write_manifest

    _, best = overfit_run
    rows = [{**row, "text": "--"} for row in read_manifest(tiny_corpus[1]["train"])[:2]]  # normalises to nothing
    data = write_manifest(tmp_path / "untranscribed.jsonl", rows)
    code, out, err = run_cli(
        "tune-lm", "--checkpoint", best, "--data", data, "--lm", train_arpa, "--out", tmp_path / "decoding.yaml"
    )
    assert code == 1 and "no utterance in the data has a transcript" in err and err.count("\n") == 1
    assert not (tmp_path / "decoding.yaml").exists()


def test_prepare_lm_downloads_and_verifies(server, tmp_path, monkeypatch):
    good, bad = b"\\data\\\nngram 1=1\n" * 1000, b"lexicon\n" * 100
    monkeypatch.setattr(
        lm_files,
        "FILES",
        {
            "good.arpa.gz": (hashlib.md5(good).hexdigest(), (len(good),)),
            "bad.txt": ("0" * 32, (len(bad),)),
            "wrong-size.txt": (None, (1,)),
        },
    )
    server["files"].update({"/good.arpa.gz": good, "/bad.txt": bad, "/wrong-size.txt": bad})
    out = lm_files.prepare_librispeech_lm(tmp_path, ["good.arpa.gz"], base_url=server["url"], log=lambda _: None)
    assert out["good.arpa.gz"].read_bytes() == good
    with pytest.raises(ASRError, match="MD5 mismatch"):
        lm_files.prepare_librispeech_lm(tmp_path, ["bad.txt"], base_url=server["url"], log=lambda _: None)
    with pytest.raises(ASRError, match="unexpected size"):
        lm_files.prepare_librispeech_lm(tmp_path, ["wrong-size.txt"], base_url=server["url"], log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "lm").iterdir()) == ["good.arpa.gz"]


def test_official_lm_table():
    assert set(lm_files.DEFAULT_FILES) <= set(lm_files.FILES)
    assert all(md5 is None or len(md5) == 32 for md5, _ in lm_files.FILES.values())


def test_prepare_lm_from_text_writes_an_arpa_the_decoder_loads(tiny_corpus, run_cli, tmp_path):
    from asr.decoding import BeamSearch
    from asr.text import CharTokenizer

    text = tmp_path / "text.txt"
    text.write_text("Hello world.\n\nthe world is big\n")
    out = tmp_path / "lm" / "mixed.arpa"
    code, stdout, err = run_cli("prepare", "lm", "--text", tiny_corpus[1]["train"], text, "--order", 2, "--out", out)
    assert code == 0, err
    assert stdout == f"lm\t{out}\n" and "2-gram LM from 10 sentences" in err  # 8 manifest rows + 2 lines
    arpa = out.read_text()
    assert arpa.startswith("\\data\\\nngram 1=") and "\tHELLO WORLD" in arpa and "\\end\\" in arpa
    BeamSearch(CharTokenizer(), beam_size=4, lm=out)  # flashlight's KenLM reads it


def test_prepare_lm_arguments_and_bad_text_are_one_line_errors(run_cli, tmp_path):
    code, _, err = run_cli("prepare", "lm", "--text", tmp_path / "missing.txt", "--out", tmp_path / "x.arpa")
    assert code == 1 and "missing.txt: not found" in err
    (tmp_path / "rows.jsonl").write_text('{"audio": "a.flac"}\n')
    code, _, err = run_cli("prepare", "lm", "--text", tmp_path / "rows.jsonl", "--out", tmp_path / "x.arpa")
    assert code == 1 and "rows.jsonl: line 1: not a manifest row" in err
    code, _, err = run_cli("prepare", "lm", "--text", tmp_path / "rows.jsonl")
    assert code == 1 and "--out LM.arpa is required" in err
    (tmp_path / "binary.txt").write_bytes(b"fine\n\xff\xfe\x00")
    code, _, err = run_cli("prepare", "lm", "--text", tmp_path / "binary.txt", "--out", tmp_path / "x.arpa")
    assert code == 1 and "binary.txt: not UTF-8 text" in err
    code, _, err = run_cli("prepare", "lm", "--text", tmp_path / "binary.txt", "--out", tmp_path)
    assert code == 1 and "is a folder" in err
    code, _, err = run_cli("prepare", "lm", "--librispeech")
    assert code == 1 and "--root is required" in err
    code, _, err = run_cli("prepare", "lm", "--librispeech", "--text", "a.txt", "--root", tmp_path)
    assert code == 2 and "not allowed with argument" in err
    assert not (tmp_path / "x.arpa").exists()
