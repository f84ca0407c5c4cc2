"""The built-in offline synthetic English corpus: espeak-ng reads random sentences in many voices.

espeak-ng comes from the `espeakng-loader` wheel (the library and its data, no system install) and
is driven through its C API (asr.data.espeak). A voice is an English accent plus a voice variant
(`en-gb-x-rp+f3`); each pair is one speaker, and test/dev speakers never speak in training.
Words come from `wordfreq`, drawn with a flattened frequency weight so that rare words still occur
several times in training. espeak reports where each word starts, so every row has true word times.

Determinism: espeak-ng keeps synthesis state in C statics (pitch flutter phase, gain control), so
a sentence sounds slightly different depending on what the process said before. Fixed shards of
utterances therefore each run in a fresh process (maxtasksperchild=1), with espeak's random
generators reseeded per utterance: the audio depends on the seed only, never on the number of
workers or on scheduling.
"""

import io
import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path

import espeakng_loader
import numpy as np
import soundfile as sf
import soxr  # librosa's resampler, used directly: importing librosa costs a second per fresh worker

from asr.audio import SAMPLE_RATE
from asr.data.espeak import espeak_lib, phonemes, synthesize
from asr.data.manifest import write_manifest
from asr.errors import ASRError
from asr.text import normalize

SPLITS = ("train", "dev", "test")
CHAPTER = {"train": 1, "dev": 2, "test": 3}  # LibriSpeech paths need one; a split's speakers share it
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
# Variants in espeak-ng-data/voices/!v that sound like a person ("" = the accent's own voice). Left
# out: whispers (no voicing), robots and heavy echo, tremolo (croak, grandpa), joke and child voices.
VARIANTS = [""] + (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie AnxiousAndy Denis Diogo Gene Gene2 "
    "Henrique Hugo Jacky Lee Marco Mario Michael Mike Nguyen Reed adam anika antonio aunty belinda benjamin "
    "boris david ed edward edward2 gustave iven iven2 iven3 iven4 john klatt klatt2 klatt3 klatt4 klatt5 klatt6 "
    "linda marcelo max michel miguel mike2 norbert pablo paul pedro quincy rob robert sandro shelby steph steph2 "
    "steph3 travis victor"
).split()
HELD_OUT_SPEAKERS = {"test": 40, "dev": 30}  # the other ~550 speakers speak in training
EXTRA_SPEAKER_BASE = 9000  # + the person's place among asr.data.voices.SPEAKERS: the other engines' speaker ids
RATE_WPM = (140, 220)
PITCH = (30, 70)  # espeak's 0-100 scale, 50 = the variant's own pitch
PITCH_RANGE = (30, 80)  # 0 = monotone, 50 = normal
SNR_DB = (25, 45)  # white or pink noise
PEAK_DBFS = (-18, -1)  # random gain: the loudest sample lands here
PAD_S = (0.1, 0.2)  # silence kept before the first and after the last word
SENTENCE_WORDS = (4, 14)
FLATTEN = 0.5  # word weight = rank ** -FLATTEN: flatter than Zipf, so rare words recur
SHARD = 50  # utterances per fresh process (see the module docstring)
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS")}
CODEC_LEVEL = (0.6, 0.95)  # libsndfile's compression level, 1 = the lowest bit rate (its mp3 encoder refuses 1.0)
SILENCE_DB = -50  # a 10 ms frame this far below the loudest one is silence (espeak's is digital zero)
# Frequent tokens that are not English words or that espeak expands (etc -> "et cetera"): foreign
# function words, abbreviations, contractions without their apostrophe, web jargon; and profanity.
NOT_WORDS = set(
    "de la le les el en es et du des del las los il di da se sa mi li na va con un non re co pre ex al "
    "ca im dont thats ive didnt doesnt isnt youre theyre wasnt couldnt wouldnt ve em op ap ep fi tho "
    "etc inc vol min sec rep doc jan feb aug sept oct nov dec com www lol omg lmao wtf ur cuz gop "
    "dick cock ass piss crap bastard anal cum tits".split()
)
PROFANE_STEMS = ("fuck", "shit", "bitch", "cunt", "porn", "pussy", "whore", "boob", "nigg")


def _vocabulary(size: int) -> list[str]:
    """The `size` most frequent English words that espeak reads as words, most frequent first."""
    import wordfreq

    espeak_lib()[0].espeak_SetVoiceByName(b"en-us")
    letters = {c: phonemes(c) for c in "abcdefghijklmnopqrstuvwxyz"}
    n = size * 2
    while True:
        top = wordfreq.top_n_list("en", n)
        words = [
            w
            for w in top
            if re.fullmatch(r"[a-z]+(?:'[a-z]+)?", w)
            and (len(w) > 1 or w in ("a", "i"))
            and re.search("[aeiouy]", w)  # vowel-less tokens (mr, st, tv) get expanded or spelled
            and w not in NOT_WORDS
            and not any(s in w for s in PROFANE_STEMS)
        ]
        if len(words) >= size * 1.1 or len(top) < n:
            break
        n *= 2
    kept = []
    for w in words:
        ph = phonemes(w)
        if len(w) > 1 and ph == "".join(letters[c] for c in w if c != "'"):
            continue  # espeak spells it out (dna, usa, ok): the audio would not be the word
        if re.fullmatch("[ivxlcdm]+", w) and ph.startswith("roUm@n"):
            continue  # read as a Roman numeral ("ii" -> "roman two")
        kept.append(w)
    return kept[:size]


def _sentences(vocab, counts, rng, sentence_words=SENTENCE_WORDS, flatten=FLATTEN) -> list[list[tuple[str, str]]]:
    """Per count, (TEXT, spoken form) pairs; no sentence occurs twice in the whole corpus, except
    one-word utterances (a short word list, e.g. digits, has fewer sentences than utterances)."""
    weights = np.arange(1, len(vocab) + 1, dtype=np.float64) ** -flatten  # by frequency rank; 0: uniform
    weights /= weights.sum()
    seen, out = set(), []
    for n in counts:
        split = []
        while len(split) < n:
            idx = rng.choice(len(vocab), size=rng.integers(sentence_words[0], sentence_words[1] + 1), p=weights)
            words = [vocab[i] for i in idx]
            text = " ".join(words).upper()
            if text in seen and sentence_words[1] > 1:
                continue
            seen.add(text)
            if len(words) >= 8 and rng.random() < 0.4:  # a comma pause mid-sentence, for varied prosody
                words[int(rng.integers(3, len(words) - 3))] += ","
            split.append((text, " ".join(words) + ("?" if rng.random() < 0.15 else ".")))
        out.append(split)
    return out


def _real_sentences(sentences, counts, rng) -> list[list[tuple[str, str]]]:
    """Per count, (TEXT, spoken form) pairs of real sentences in random order. Every split but the last
    (training) gets sentences of its own; training cycles through the rest when it wants more utterances
    than there are sentences left (each then spoken by other voices)."""
    order = rng.permutation(len(sentences))
    if sum(counts[:-1]) >= len(sentences):
        raise ASRError(
            f"synth: {len(sentences)} sentences are too few for {sum(counts[:-1])} held-out utterances "
            "and a training split: give more text"
        )
    out, start = [], 0
    for k, n in enumerate(counts):
        idx = order[start : start + n] if k < len(counts) - 1 else order[start:][np.arange(n) % (len(order) - start)]
        start += n
        out.append([(sentences[i].text, sentences[i].spoken) for i in idx])
    return out


def _fill_starts(starts, words, first, last) -> list[float]:
    """Times for words without an event: espeak folds some short words into a neighbour ("of a",
    a final "for the") and reports one start for both; share that span in proportion to letters."""
    starts = list(starts)
    if starts[0] is None:
        starts[0] = first
    known = [i for i, t in enumerate(starts) if t is not None]
    for a, b in zip(known, known[1:] + [len(starts)]):
        span_end = starts[b] if b < len(starts) else last
        letters = np.cumsum([len(w) for w in words[a:b]])
        for i in range(a + 1, b):
            starts[i] = starts[a] + (span_end - starts[a]) * letters[i - a - 1] / letters[-1]
    return starts


def _render(job) -> dict:
    """Synthesize one utterance, write its FLAC, return its manifest row."""
    if job["engine"] == "espeak-ng":
        audio, sr, starts = synthesize(job)
    else:  # other engines report no word times: the row then has none
        from asr.data import voices

        try:  # the engine's own draws (prosody) from a stream apart from this function's (noise, gain)
            audio, sr = voices.synthesize(job["spoken"], job["voice"], np.random.default_rng([job["seed"], 1]))
        except Exception as e:  # a worker's failure must reach the user as one line naming voice and text
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ASRError(f"synth: {job['voice']} failed on {job['spoken']!r}: {why}") from None
        starts = None
    out_sr = job["sample_rate"]
    hop = sr // 100  # 10 ms frames
    if len(audio) < hop or not np.abs(audio).max() > 0:
        raise ASRError(f"synth: {job.get('voice', job['engine'])} gave no sound for {job['spoken']!r}")
    rms = np.sqrt(np.mean(audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    frames = np.flatnonzero(rms > rms.max() * 10 ** (SILENCE_DB / 20))
    first, last = frames[0] * hop / sr, (frames[-1] + 1) * hop / sr
    starts = _fill_starts(starts, job["text"].split(), first, last) if starts is not None else []
    ends = []
    for k, start in enumerate(starts):  # a word ends with its last sound before the next word starts
        stop = starts[k + 1] if k + 1 < len(starts) else last
        sounding = frames[(frames >= int(start * sr / hop)) & (frames < int(np.ceil(stop * sr / hop)))]
        ends.append(min(stop, (sounding[-1] + 1) * hop / sr) if len(sounding) else stop)
    lead, trail = job["pads"]
    speech = soxr.resample(audio[int(first * sr) : int(last * sr)], sr, out_sr, quality="HQ")
    speech *= 10 ** (job["peak_dbfs"] / 20) / max(np.abs(speech).max(), 1e-6)
    clip = np.concatenate([np.zeros(int(lead * out_sr)), speech, np.zeros(int(trail * out_sr))])
    rng = np.random.default_rng(job["seed"])
    noise = rng.standard_normal(len(clip))  # white
    if job["pink"]:  # 1/f power: scale each frequency bin by 1/sqrt(f); a power-of-two FFT is 10x faster
        spec = np.fft.rfft(rng.standard_normal(1 << (len(clip) - 1).bit_length()))
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        noise = np.fft.irfft(spec)[: len(clip)]
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (job["snr_db"] / 10))
    clip = np.clip(clip + noise, -1, 32767 / 32768).astype(np.float32)
    if job.get("codec"):
        clip = codec_roundtrip(clip, out_sr, job["codec"], job["codec_level"])
    path = Path(job["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    flac = io.BytesIO()  # encode in memory, write once: libsndfile's many small writes and seeks are 10x slower
    sf.write(flac, clip, out_sr, format="FLAC", subtype="PCM_16")
    path.write_bytes(flac.getvalue())
    words = [
        [w, round(max(s, first) + lead - first, 3), round(min(e, last) + lead - first, 3)]
        for w, s, e in zip(job["text"].split(), starts, ends)
    ]
    row = {
        "id": path.stem,
        "audio": job["audio"],
        "duration": round(len(clip) / out_sr, 3),
        "text": job["text"],
        "speaker": str(job["speaker"]),
        "words": words,
        "engine": job["engine"],
        "voice": job["voice"],
        "channel": job.get("codec") or "clean",
    }
    if not words:
        del row["words"]
    return row


def codec_roundtrip(audio: np.ndarray, sample_rate: int, codec: str, level: float) -> np.ndarray:
    """Through a lossy codec (mp3 | vorbis | opus, libsndfile) and back: the same length and rate, the
    codec's smearing and band limits. `level` 0-1: libsndfile's compression level (1 = lowest bit rate)."""
    fmt, subtype = CODECS[codec]
    rate = 48000 if codec == "opus" and sample_rate not in (8000, 12000, 16000, 24000, 48000) else sample_rate
    coded = io.BytesIO()
    sf.write(
        coded,
        soxr.resample(audio, sample_rate, rate) if rate != sample_rate else audio,
        rate,
        format=fmt,
        subtype=subtype,
        compression_level=level,
    )
    coded.seek(0)
    out, got = sf.read(coded, dtype="float32")
    out = soxr.resample(out, got, sample_rate) if got != sample_rate else out
    out = np.pad(out, (0, max(0, len(audio) - len(out))))[: len(audio)]  # encoder padding trimmed, any gap filled
    return np.clip(out, -1, 32767 / 32768).astype(np.float32)


def _render_shard(jobs) -> list[dict]:
    return [_render(job) for job in jobs]


def _voices() -> dict[int, str]:
    """Speaker id -> espeak voice; id = 100 * accent number + variant number, stable across versions."""
    variant_dir = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return {
        100 * (a + 1) + v: accent + (f"+{variant}" if variant else "")
        for a, accent in enumerate(ACCENTS)
        for v, variant in enumerate(VARIANTS)
        if not variant or (variant_dir / variant).is_file()
    }


def _plan(
    out: Path,
    vocab,
    counts,
    seed,
    sentence_words=SENTENCE_WORDS,
    sample_rate=SAMPLE_RATE,
    flatten=FLATTEN,
    sentences=None,
    codec_prob=0.0,
    extra_voices=(),
    extra_share=0.0,
) -> list[dict]:
    """Everything random about each utterance, decided here so that workers only execute. `extra_share` of
    the training utterances are spoken by `extra_voices` (other engines, asr.data.voices) in turn."""
    voices = _voices()
    ids = np.random.default_rng([seed, 1]).permutation(sorted(voices)).tolist()
    n_test, n_dev = HELD_OUT_SPEAKERS["test"], HELD_OUT_SPEAKERS["dev"]
    speakers = {"test": ids[:n_test], "dev": ids[n_test : n_test + n_dev], "train": ids[n_test + n_dev :]}
    order = ("test", "dev", "train")  # held-out sentences first: they do not change with the training size
    text_rng = np.random.default_rng([seed, 2])
    texts = dict(
        zip(
            order,
            _real_sentences(sentences, [counts[s] for s in order], text_rng)
            if sentences
            else _sentences(vocab, [counts[s] for s in order], text_rng, sentence_words, flatten),
        )
    )
    jobs, style = [], {}
    for split_no, split in enumerate(SPLITS):
        taken = {}
        for i, (text, spoken) in enumerate(texts[split]):
            spk, engine = speakers[split][i % len(speakers[split])], "espeak-ng"
            voice = voices[spk]
            if split == "train" and extra_voices and np.random.default_rng([seed, 6, i]).random() < extra_share:
                voice = extra_voices[_pick_voice(extra_voices, np.random.default_rng([seed, 7, i]))]
                spk, engine = EXTRA_SPEAKER_BASE + _person_number(voice), voice.split(":")[0]
            if spk not in style:  # a speaker's habitual rate and pitch, varied a little per utterance
                r = np.random.default_rng([seed, 3, spk])
                style[spk] = (r.uniform(*RATE_WPM), r.uniform(*PITCH), r.uniform(*PITCH_RANGE))
            rng = np.random.default_rng([seed, 4, split_no, i])
            taken[spk] = taken.get(spk, -1) + 1
            uid = f"{spk}-{CHAPTER[split]}-{taken[spk]:04d}"
            path = out / "LibriSpeech" / split / str(spk) / str(CHAPTER[split]) / f"{uid}.flac"
            jobs.append(
                {
                    "split": split,
                    "text": text,
                    "spoken": spoken,
                    "speaker": spk,
                    "voice": voice,
                    "engine": engine,
                    "rate": np.clip(style[spk][0] * rng.uniform(0.93, 1.07), *RATE_WPM),
                    "pitch": np.clip(style[spk][1] + rng.uniform(-4, 4), 0, 100),
                    "range": np.clip(style[spk][2] + rng.uniform(-8, 8), 0, 100),
                    "snr_db": rng.uniform(*SNR_DB),
                    "pink": bool(rng.random() < 0.5),
                    "peak_dbfs": rng.uniform(*PEAK_DBFS),
                    "pads": tuple(rng.uniform(*PAD_S, size=2)),
                    "seed": int(rng.integers(2**31)),
                    "sample_rate": sample_rate,
                    "path": str(path),
                    "audio": os.path.relpath(path, out / "manifests"),
                }
            )
            channel = np.random.default_rng([seed, 5, split_no, i])  # its own stream: the draws above stay as they were
            if channel.random() < codec_prob:
                jobs[-1].update(codec=str(channel.choice(list(CODECS))), codec_level=channel.uniform(*CODEC_LEVEL))
    return jobs


def _speaker_voices(jobs) -> dict[str, str]:
    """Speaker id -> its voice (or voices, for one person spoken by several engines), in one pass."""
    voices = {}
    for job in jobs:
        voices.setdefault(job["speaker"], set()).add(job["voice"])
    return {str(spk): ", ".join(sorted(voices[spk])) for spk in sorted(voices)}


def _person_number(voice: str) -> int:
    """A person's stable number, whichever engines are installed: kal is one speaker in three voices."""
    from asr.data.voices import SPEAKERS

    return sorted(set(SPEAKERS.values())).index(SPEAKERS[voice])


def _pick_voice(names, rng) -> int:
    """A person first, then one of their voices: three voices of one man (kal) are not three speakers."""
    from asr.data.voices import SPEAKERS

    people = sorted({SPEAKERS.get(v, v) for v in names})
    person = people[int(rng.integers(len(people)))]
    theirs = [k for k, v in enumerate(names) if SPEAKERS.get(v, v) == person]
    return theirs[int(rng.integers(len(theirs)))]


def _extra_voices(engines, log) -> list[str]:
    """The voices of the usable engines among `engines` (besides espeak-ng); the others skipped in one line."""
    from asr.data import voices

    unknown = sorted(set(engines) - {"espeak-ng"} - set(voices.ENGINES))
    if unknown:
        raise ASRError(f"synth: unknown engine {unknown[0]!r} (known: espeak-ng, {', '.join(voices.ENGINES)})")
    found = []
    for name in [e for e in voices.ENGINES if e in engines]:
        missing = voices.ENGINES[name].available()
        if missing:
            log(f"synth: skipping {name}: {missing}")
        else:
            found += voices.ENGINES[name].voices()
    return found


def _fresh_process_pool(workers: int):
    """A pool that runs each task in a new process. New processes come from a forkserver, not
    from forking this process: the pool replaces workers from a helper thread, and a fork taken
    while another thread holds a lock (an import's, say) leaves the child waiting on it forever."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn").Pool(workers, maxtasksperchild=1)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # the server imports numpy, soxr etc. once; workers inherit them
    return ctx.Pool(workers, maxtasksperchild=1)


def _prepare_out_dir(out: Path):
    """Empty a folder that holds an earlier synthetic corpus (even a half-written one); touch nothing else."""
    owned = [out / "LibriSpeech" / s for s in SPLITS] + [out / "manifests"]
    if (out / "corpus.json").is_file():
        for d in owned:
            shutil.rmtree(d, ignore_errors=True)
    elif any(d.is_dir() and any(d.iterdir()) for d in owned):
        raise ASRError(f"{out}: already holds data that is not a synthetic corpus; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text('{"complete": false}\n')  # marks the folder as ours if this run stops


def _write_outputs(out: Path, jobs, rows, corpus) -> dict[str, Path]:
    """trans.txt files, manifests and corpus.json (with per-split statistics)."""
    manifests, stats = {}, {}
    train_words = {w for job in jobs if job["split"] == "train" for w in job["text"].split()}
    for split in SPLITS:
        split_rows = [r for r, job in zip(rows, jobs) if job["split"] == split]
        if not split_rows:
            continue  # e.g. a word list for training only: no empty manifest to trip over later
        assert all(normalize(r["text"]) == r["text"] for r in split_rows)  # vocabulary is A-Z and '
        by_dir = {}
        for r in split_rows:
            by_dir.setdefault(r["id"].rsplit("-", 1)[0], []).append(f"{r['id']} {r['text']}\n")
        for name, lines in by_dir.items():
            speaker, chapter = name.split("-")
            (out / "LibriSpeech" / split / speaker / chapter / f"{name}.trans.txt").write_text("".join(sorted(lines)))
        manifests[split] = write_manifest(out / "manifests" / f"{split}.jsonl", split_rows)
        tokens = [w for r in split_rows for w in r["text"].split()]
        stats[split] = {
            "utterances": len(split_rows),
            "hours": round(sum(r["duration"] for r in split_rows) / 3600, 3),
            "distinct_words": len(set(tokens)),
            "voices": sorted({corpus["speakers"][r["speaker"]] for r in split_rows}),
        }
        if split != "train":
            unseen = sum(w not in train_words for w in tokens)
            stats[split]["words_unseen_in_train"] = round(unseen / max(1, len(tokens)), 4)
    (out / "corpus.json").write_text(json.dumps({"complete": True, **corpus, "splits": stats}, indent=1) + "\n")
    return manifests


def synthesize_corpus(
    out_dir,
    *,
    train_utts=16000,
    dev_utts=200,
    test_utts=300,
    vocab_size=3000,
    seed=0,
    words=None,
    sentence_words=SENTENCE_WORDS,
    sample_rate=SAMPLE_RATE,
    workers=2,
    text=None,
    codec_prob=0.0,
    engines=("espeak-ng",),
    extra_share=0.3,
    log=print,
) -> dict[str, Path]:
    """Write the corpus under `out_dir`; returns {"train"|"dev"|"test": manifest path}.

    `words` replaces the built-in vocabulary (the `vocab_size` most frequent English words) with
    your own list, drawn uniformly: e.g. the ten digit words, one per utterance
    (`sentence_words=(1, 1)`), as extra voices for a small real corpus. `sample_rate` is the rate the
    FLAC files are written at (8000 matches telephone-band corpora such as FSDD).

    `text`: text files or folders of them (asr.data.sentences): real sentences are read instead of random
    words, each split with sentences of its own. `codec_prob` of the utterances go through a lossy codec
    at a low bit rate (mp3, vorbis or opus) before they are written; each row names its `channel`.
    `engines`: espeak-ng and any of asr.data.voices.ENGINES (piper, flite, festival); the others' voices
    speak `extra_share` of the training utterances (never dev or test, whose speakers stay unheard). An
    engine that is not installed is skipped with one line saying how to install it.
    """
    counts = {"train": train_utts, "dev": dev_utts, "test": test_utts}
    if min(counts.values()) < 0 or (words is None and vocab_size < 20):
        raise ASRError("synth: utterance counts must be >= 0 and the vocabulary at least 20 words")
    if not 1 <= sentence_words[0] <= sentence_words[1]:
        raise ASRError(
            f"synth: words per utterance must be 1 <= min <= max, got {sentence_words[0]}-{sentence_words[1]}"
        )
    if words is not None:
        words = [w.strip().lower() for w in words if w.strip()]
        bad = [w for w in words if not re.fullmatch(r"[a-z]+(?:'[a-z]+)?", w)]
        if not words or bad:
            raise ASRError(
                f"synth: word list must hold plain English words (letters and an apostrophe); "
                f"got {bad[0] if bad else 'no words'!r}"
            )
    sentences = None
    if text is not None:
        from asr.data.sentences import read_sentences, text_files

        sentences = read_sentences(text_files(text), (sentence_words[0], max(sentence_words[1], 4)))
        if not sentences:
            raise ASRError(f"synth: no speakable sentences in {', '.join(map(str, text_files(text)))}")
    extra_voices = _extra_voices(engines, log)
    out = Path(out_dir).resolve()
    _prepare_out_dir(out)
    started, workers = time.time(), max(1, workers)
    with _fresh_process_pool(workers) as pool:
        # The vocabulary is built in a worker: this process never loads espeak.
        if sentences:
            vocab = sorted({w for s in sentences for w in s.text.split()})
            log(
                f"synth: {len(sentences)} sentences ({len(vocab)} words), {sum(counts.values())} utterances, "
                f"{workers} workers"
            )
        else:
            vocab = list(dict.fromkeys(words)) if words else pool.apply(_vocabulary, (vocab_size,))
            log(f"synth: {len(vocab)} words, {sum(counts.values())} utterances, {workers} workers")
        jobs = _plan(
            out,
            vocab,
            counts,
            seed,
            sentence_words,
            sample_rate,
            flatten=0 if words else FLATTEN,
            sentences=sentences,
            codec_prob=codec_prob,
            extra_voices=extra_voices,
            extra_share=extra_share,
        )
        # Other engines' utterances go in shards of their own, 4x larger: a process loads Piper's model
        # once a shard (about 2 s), and their audio depends on each utterance's seed alone.
        espeak = [i for i, job in enumerate(jobs) if job["engine"] == "espeak-ng"]
        other = [i for i, job in enumerate(jobs) if job["engine"] != "espeak-ng"]
        shards = [espeak[i : i + SHARD] for i in range(0, len(espeak), SHARD)]
        shards += [other[i : i + 4 * SHARD] for i in range(0, len(other), 4 * SHARD)]
        rows, done = [None] * len(jobs), 0
        for k, (shard, shard_rows) in enumerate(
            zip(shards, pool.imap(_render_shard, [[jobs[i] for i in s] for s in shards])), 1
        ):
            for i, row in zip(shard, shard_rows):
                rows[i] = row
            done += len(shard)
            if k % max(1, len(shards) // 10) == 0 or k == len(shards):
                log(f"synth: {done}/{len(jobs)} utterances ({time.time() - started:.0f} s)")
    corpus = {
        "seed": seed,
        "sizes": counts,
        "vocab_size": vocab_size,
        "vocabulary_words": len(vocab),
        "word_list": vocab if words else None,
        "sentence_words": list(sentence_words),
        "sample_rate": sample_rate,
        "rate_wpm": RATE_WPM,
        "pitch": PITCH,
        "pitch_range": PITCH_RANGE,
        "snr_db": SNR_DB,
        "peak_dbfs": PEAK_DBFS,
        "word_weight": "uniform" if words else f"rank^-{FLATTEN}",
        "text": [str(p) for p in text_files(text)] if text is not None else None,
        "sentences": len(sentences) if sentences else None,
        "codec_prob": codec_prob,
        "engines": ["espeak-ng"] + sorted({v.split(":")[0] for v in extra_voices}),
        "extra_share": extra_share if extra_voices else 0.0,
        "speakers": _speaker_voices(jobs),
    }
    manifests = _write_outputs(out, jobs, rows, corpus)
    hours = sum(r["duration"] for r in rows) / 3600
    log(f"synth: done in {time.time() - started:.0f} s: {hours:.2f} h of audio in {out}")
    return manifests
