"""Audio in, text out: a loaded model, batched transcription, and long files in bounded memory.

Long files are read window by window (soundfile seeks, so an hour-long file is never decoded
whole): each window has `CONTEXT_S` of extra audio on both sides that the BiLSTM sees but whose
frames are dropped, so words cut by a window edge are still recognised from both sides.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, load_audio, to_mono_16k
from asr.checkpoint import load_module
from asr.decoding import Hypothesis, Word, greedy, words_with_times
from asr.errors import ASRError, file_error
from asr.features import HOP_LENGTH

WINDOW_S = 20  # audio longer than this is transcribed in windows of this length (about the
#                longest training utterance: BiLSTMs generalise poorly to much longer inputs) ...
CONTEXT_S = 2  # ... each with this much context on either side
LONG_S = WINDOW_S + 2 * CONTEXT_S  # longer than one window with its context: windowed
BATCH_SECONDS = 240  # audio per forward pass when transcribing many short files
DECODING_DEFAULTS = {"decoder": "greedy", "beam_size": 50, "lm": None, "lexicon": None, "lm_weight": 2.0,
                     "word_score": 0.0}


@dataclass
class Result:
    path: str
    text: str = ""
    duration: float = 0.0
    error: str = ""
    words: list[Word] = field(default_factory=list)  # each with start/end seconds and a confidence

    def as_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "text": self.text, "duration": round(self.duration, 3),
                "words": [w.as_dict() for w in self.words]}


def pick_device(device: str = "auto") -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def decoding_settings(checkpoint, config: dict, overrides: dict) -> dict:
    """Decoder settings, later ones winning: defaults, the training config's `decoding` section,
    `decoding.yaml` next to the checkpoint (written by `asr tune-lm`), then `overrides` (the CLI)."""
    import yaml

    settings = {**DECODING_DEFAULTS, **(config.get("decoding") or {})}
    beside = Path(checkpoint).parent / "decoding.yaml"
    if beside.is_file():
        try:
            settings.update(yaml.safe_load(beside.read_text()) or {})
        except yaml.YAMLError as e:
            raise file_error(beside, f"not valid YAML ({str(e).splitlines()[0]})") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("lm") and "decoder" not in given:
        given["decoder"] = "beam"  # an LM on the command line means beam search
    settings.update(given)
    unknown = set(settings) - set(DECODING_DEFAULTS)
    if unknown:
        raise ASRError(f"unknown decoding setting(s): {', '.join(sorted(unknown))}")
    if settings["decoder"] not in ("greedy", "beam"):
        raise ASRError(f"decoder {settings['decoder']!r}: expected greedy or beam")
    return settings


def make_decoder(tokenizer, settings: dict):
    """Settings -> a function from one utterance's (T', V) logits to a Hypothesis."""
    if settings["decoder"] == "greedy":
        return lambda logits: greedy(logits, tokenizer)
    from asr.decoding import BeamSearch

    return BeamSearch(tokenizer, beam_size=settings["beam_size"], lm=settings["lm"], lexicon=settings["lexicon"],
                      lm_weight=settings["lm_weight"], word_score=settings["word_score"])


class Recognizer:
    """A checkpoint loaded once; transcribes arrays or files.

    `decoder` maps one utterance's (T', V) logits to a Hypothesis: greedy by default, or an
    `asr.decoding.BeamSearch` built for this recognizer's tokenizer (see `Recognizer.with_beam`).

        rec = Recognizer("runs/demo/checkpoints/best.ckpt")
        result = rec.transcribe("clip.flac")   # or a mono 16 kHz float32 array
        result.text, [(w.word, w.start, w.end) for w in result.words]
    """

    def __init__(self, checkpoint, device: str = "auto", decoding: dict | None = None):
        self.device = pick_device(device)
        self.module = load_module(checkpoint, self.device)
        self.tokenizer = self.module.tokenizer
        self.frame_samples = HOP_LENGTH * self.module.model.subsample.factor  # samples per output frame
        self.decoding = decoding_settings(checkpoint, self.module.config, decoding or {})
        self.decoder = make_decoder(self.tokenizer, self.decoding)

    def result(self, path, hyp: Hypothesis, duration: float) -> Result:
        words = words_with_times(hyp, self.tokenizer, self.frame_samples / SAMPLE_RATE)
        for w in words:  # the last frame may reach past the audio's end by up to one frame
            w.start, w.end = min(w.start, duration), min(w.end, duration)
        return Result(str(path), hyp.text, duration, words=words)

    def transcribe(self, audio) -> Result:
        """A path, or a mono 16 kHz float32 array -> Result (text and timed words)."""
        if isinstance(audio, np.ndarray):
            hyp = self.long_array(audio) if len(audio) > LONG_S * SAMPLE_RATE else self.transcribe_arrays([audio])[0]
            return self.result("<array>", hyp, len(audio) / SAMPLE_RATE)
        return transcribe_files(self, [audio])[0]

    def long_array(self, wave: np.ndarray) -> Hypothesis:
        """A long decoded recording, recognised window by window (the network never sees it whole)."""
        return self.decoder(self.windowed_logits(lambda lo, hi: wave[lo:hi], len(wave)))

    @torch.inference_mode()
    def logits(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Mono 16 kHz arrays -> one (T', V) logits tensor each, computed as one padded batch."""
        lens = torch.tensor([len(w) for w in waves])
        audio = torch.zeros(len(waves), int(lens.max()))
        for i, w in enumerate(waves):
            audio[i, : len(w)] = torch.from_numpy(w)
        logits, out_lens = self.module(audio.to(self.device), lens.to(self.device))
        return [logits[i, : out_lens[i]].float().cpu() for i in range(len(waves))]

    def batched_logits(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Many arrays -> their (T', V) logits, in batches of similar length holding at most
        BATCH_SECONDS of padded audio each."""
        out: list[torch.Tensor] = [None] * len(waves)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        batch: list[int] = []
        for i in order + [None]:
            full = i is None or (batch and len(waves[i]) * (len(batch) + 1) > BATCH_SECONDS * SAMPLE_RATE)
            if full and batch:
                for j, lg in zip(batch, self.logits([waves[j] for j in batch])):
                    out[j] = lg
                batch = []
            if i is not None:
                batch.append(i)
        return out

    def transcribe_arrays(self, waves: list[np.ndarray]) -> list[Hypothesis]:
        return [self.decoder(lg) for lg in self.batched_logits(waves)]

    def long_file_logits(self, path: Path) -> torch.Tensor:
        """Windowed pass over a long file, read window by window -> (T', V) logits for the whole file."""
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate

            def read(lo: int, hi: int) -> np.ndarray:  # 16 kHz sample positions -> that stretch, at 16 kHz
                f.seek(int(lo * sr / SAMPLE_RATE))
                wave = to_mono_16k(f.read(int((hi - lo) * sr / SAMPLE_RATE), dtype="float32"), sr)
                if not np.isfinite(wave).all():  # as load_audio checks for short files
                    raise file_error(path, "audio contains NaN or infinite samples")
                return wave

            return self.windowed_logits(read, int(f.frames * SAMPLE_RATE / sr))

    def windowed_logits(self, read, total: int) -> torch.Tensor:
        """(T', V) logits of `total` samples at 16 kHz, WINDOW_S at a time with CONTEXT_S of context on each
        side; `read(lo, hi)` returns samples lo..hi. Every window starts on an output frame, so the frames
        join exactly as the whole file's would (tests/test_pipeline.py)."""
        step = WINDOW_S * SAMPLE_RATE // self.frame_samples * self.frame_samples  # whole output frames
        ctx = CONTEXT_S * SAMPLE_RATE // self.frame_samples * self.frame_samples
        pieces = []
        for start in range(0, total, step):
            lo, hi = max(0, start - ctx), min(total, start + step + ctx)
            logits = self.logits([read(lo, hi)])[0]
            skip = (start - lo) // self.frame_samples
            last = start + step >= total  # keeps every frame to the end, as the whole file would have
            pieces.append(logits[skip:] if last else logits[skip : skip + step // self.frame_samples])
        return torch.cat(pieces)


def transcribe_files(recognizer: Recognizer, paths, on_result=None) -> list[Result]:
    """Transcribe many files: short ones batched together, long ones windowed. A file that fails
    becomes a Result with `error` set and the rest go on; `on_result` sees each result, in input
    order, as soon as it and every file before it are done."""
    paths = [Path(p) for p in paths]
    results: list[Result | None] = [None] * len(paths)
    pending: dict[int, np.ndarray] = {}  # decoded short files waiting for a batch
    shown = 0

    def done(i: int, result: Result):
        nonlocal shown
        results[i] = result
        while shown < len(results) and results[shown] is not None:
            if on_result:
                on_result(results[shown])
            shown += 1

    def failed(i: int, e: Exception):
        message = str(e) if isinstance(e, ASRError) else str(file_error(paths[i], f"{type(e).__name__}: {e}"))
        done(i, Result(str(paths[i]), error=message))

    def flush():
        items = list(pending.items())
        pending.clear()
        try:
            hyps = recognizer.transcribe_arrays([wave for _, wave in items])
        except Exception:  # one file (or the batch's size) broke the batch: go file by file, so only it fails
            hyps = [None] * len(items)
        for (i, wave), hyp in zip(items, hyps):
            try:
                hyp = hyp if hyp is not None else recognizer.transcribe_arrays([wave])[0]
                done(i, recognizer.result(paths[i], hyp, len(wave) / SAMPLE_RATE))
            except Exception as e:
                failed(i, e)

    for i, p in enumerate(paths):
        try:
            if is_long_file(p):
                done(i, recognizer.result(p, recognizer.decoder(recognizer.long_file_logits(p)), _duration(p)))
            else:  # short, or in a format soundfile cannot seek in (m4a, webm...): decoded whole
                wave = load_audio(p)
                if len(wave) > LONG_S * SAMPLE_RATE:  # still recognised window by window
                    done(i, recognizer.result(p, recognizer.long_array(wave), len(wave) / SAMPLE_RATE))
                else:
                    pending[i] = wave
        except Exception as e:  # an unreadable file, or an unexpected decoder failure: the others go on
            failed(i, e)
        if sum(len(w) for w in pending.values()) > 4 * BATCH_SECONDS * SAMPLE_RATE:
            flush()
    flush()
    return results


AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".au", ".webm"}


def expand_inputs(inputs) -> list[Path]:
    """Files as given; a folder becomes the audio files under it (by extension, sorted)."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise file_error(item, f"no audio files in this folder ({', '.join(sorted(AUDIO_EXTENSIONS))})")
            out += found
        else:
            out.append(item)
    return out


def is_long_file(path: Path) -> bool:
    """Longer than one window plus its context: transcribed window by window."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return False  # not seekable by soundfile: decoded whole by load_audio
    return info.frames / info.samplerate > LONG_S


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration
