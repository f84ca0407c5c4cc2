"""Audio in, text out: `asr.load_model(path)` and the Model it returns.

    model = asr.load_model("runs/demo/checkpoints/best.ckpt")   # or a folder written by `asr export`
    result = model.transcribe("clip.flac")            # a path, a NumPy array or a torch tensor
    result.text, [(w.word, w.start, w.end) for w in result.words]
    results = model.transcribe_many(paths)             # a bad file: its result.error; the rest go on

Long audio is read window by window (soundfile seeks, so an hour-long file is never decoded whole):
each window has `CONTEXT_S` of extra audio on both sides that the BiLSTM sees but whose frames are
dropped, so words cut by a window edge are still recognised from both sides. Nothing here imports
training code, nor torch: the network is a PyTorch checkpoint or an exported ONNX model (asr.runtime),
called on NumPy arrays, and everything around it is shared.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.audio import SAMPLE_RATE, check_samples, load_audio, to_mono_16k
from asr.decoding import DecodingOptions, Hypothesis, Word, decoding_options, greedy, to_numpy, words_with_times
from asr.errors import ASRError, file_error
from asr.packing import pack_by_duration, pad

__all__ = ["DecodingOptions", "Model", "Result", "load_model"]

WINDOW_S = 20  # audio longer than this is transcribed in windows of this length (about the
#                longest training utterance: BiLSTMs generalise poorly to much longer inputs) ...
CONTEXT_S = 2  # ... each with this much context on either side
LONG_S = WINDOW_S + 2 * CONTEXT_S  # longer than one window with its context: windowed
BATCH_SECONDS = 240  # padded audio per forward pass when transcribing many short files


@dataclass
class Result:
    path: str
    text: str = ""
    duration: float = 0.0  # seconds
    error: str = ""  # set (and text empty) when this input failed; transcribe_many goes on with the rest
    words: list[Word] = field(default_factory=list)  # each with start/end seconds and a confidence

    def as_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "text": self.text,
            "duration": round(self.duration, 3),
            "words": [w.as_dict() for w in self.words],
        }


def load_model(path, device: str = "auto") -> "Model":
    """A checkpoint written by `asr train` (run by PyTorch) or a folder written by `asr export` (run by
    onnxruntime, no torch needed) -> Model on `device` (auto: the GPU if there is one)."""
    from asr.runtime import load_network

    network, tokenizer, info = load_network(path, device)
    return Model(network, tokenizer, info, source=str(path))


class Model:
    """A trained model: the network (asr.runtime: PyTorch or ONNX), its tokenizer, and the decoders built for it."""

    def __init__(self, network, tokenizer, info: dict | None = None, source: str | None = None):
        self.network, self.tokenizer, self.device = network, tokenizer, network.device
        self.info = info or {}  # the checkpoint's (or export's) description: dims, tokenizer, config
        self.source = source  # the checkpoint file or exported folder it was loaded from
        self.frame_samples = network.frame_samples  # audio samples per output frame
        self._decoders = {}  # (beam size, LM, lexicon) -> beam search: each LM is loaded once per model

    def transcribe(
        self, audio, options: DecodingOptions | None = None, *, sample_rate: int = SAMPLE_RATE, **changes
    ) -> Result:
        """A path, a 1-D NumPy array or a 1-D torch tensor (float samples at `sample_rate`) -> Result.
        `changes`: DecodingOptions fields, e.g. decoder="beam", lm="lm.arpa". A bad input raises ASRError."""
        options = decoding_options(options, **changes)
        if isinstance(audio, (str, Path)):
            result = self.transcribe_many([audio], options)[0]
            if result.error:
                raise ASRError(result.error)
            return result
        wave = as_wave(audio, sample_rate)
        logits = self.windowed_emissions(lambda lo, hi: wave[lo:hi], len(wave))
        return self.result("<array>", logits, len(wave) / SAMPLE_RATE, options)

    def transcribe_many(
        self, paths, options: DecodingOptions | None = None, *, on_result=None, **changes
    ) -> list[Result]:
        """Many files: short ones batched together, long ones in windows. A file that fails becomes a
        Result with `error` set and the rest go on; `on_result` sees each result, in input order, as
        soon as it and every file before it are done."""
        options = decoding_options(options, **changes)
        decode = self.decoder(options)  # a bad LM or lexicon fails here, before any audio is read
        results = []

        def done(path, logits, duration, error):
            try:
                result = (
                    Result(str(path), error=error) if error else self.result(path, logits, duration, options, decode)
                )
            except Exception as e:  # an unexpected decoder failure: this file only
                result = Result(str(path), error=str(file_error(path, f"{type(e).__name__}: {e}")))
            results.append(result)
            if on_result:
                on_result(result)

        self.file_emissions(paths, done)
        return results

    def result(self, path, logits: np.ndarray, duration: float, options: DecodingOptions, decode=None) -> Result:
        hyp: Hypothesis = (decode or self.decoder(options))(logits)
        words = (
            words_with_times(hyp, self.tokenizer, self.frame_samples / SAMPLE_RATE) if options.word_timestamps else []
        )
        for w in words:  # the last frame may reach past the audio's end by up to one frame
            w.start, w.end = min(w.start, duration), min(w.end, duration)
        return Result(str(path), hyp.text, duration, words=words)

    def decoder(self, options: DecodingOptions):
        """-> a function from one utterance's (T', V) logits to a Hypothesis (greedy or beam search)."""
        if not options.beam:
            return lambda logits: greedy(logits, self.tokenizer)
        search = (options.beam_size, options.lm, options.lexicon)  # what loading the LM depends on
        if search not in self._decoders:
            from asr.decoding import BeamSearch

            self._decoders[search] = BeamSearch(
                self.tokenizer, options.beam_size, lm=options.lm, lexicon=options.lexicon
            )
        return self._decoders[search].with_weights(options.lm_weight, options.word_score)

    def emissions(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Mono 16 kHz arrays -> one (T', V) float32 logits array each, in batches of similar length holding
        at most BATCH_SECONDS of padded audio each."""
        out: list[np.ndarray] = [None] * len(waves)
        for batch in pack_by_duration([len(w) / SAMPLE_RATE for w in waves], BATCH_SECONDS):
            logits, out_lens = self.network(*pad([waves[i] for i in batch]))
            for row, i in enumerate(batch):
                out[i] = logits[row, : out_lens[row]]
        return out

    def windowed_emissions(self, read, total: int) -> np.ndarray:
        """(T', V) logits of `total` samples at 16 kHz; `read(lo, hi)` returns samples lo..hi, window by
        window (window_spans), so a long file is never decoded whole."""
        spans = window_spans(total, self.frame_samples)
        return join_windows([self.emissions([read(lo, hi)])[0] for lo, hi, _, _ in spans], spans)

    def file_emissions(self, paths, done) -> None:
        """The one way files become emissions (transcription, evaluation, LM tuning): for each file, in
        input order, done(path, (T', V) logits, seconds, "") or done(path, None, 0.0, error message)."""
        paths = [Path(p) for p in paths]
        ready: dict[int, tuple] = {}
        pending: dict[int, np.ndarray] = {}  # decoded short files waiting for a batch
        shown = 0

        def finish(i, *outcome):
            nonlocal shown
            ready[i] = outcome
            while shown in ready:
                done(paths[shown], *ready.pop(shown))
                shown += 1

        def failed(i, e):
            finish(
                i,
                None,
                0.0,
                str(e) if isinstance(e, ASRError) else str(file_error(paths[i], f"{type(e).__name__}: {e}")),
            )

        def flush():
            items = list(pending.items())
            pending.clear()
            try:
                logits = self.emissions([wave for _, wave in items])
            except Exception:  # one file (or the batch's size) broke the batch: go file by file, so only it fails
                logits = [None] * len(items)
            for (i, wave), lg in zip(items, logits):
                try:
                    finish(i, lg if lg is not None else self.emissions([wave])[0], len(wave) / SAMPLE_RATE, "")
                except Exception as e:
                    failed(i, e)

        for i, path in enumerate(paths):
            try:
                if (seconds := seekable_seconds(path)) and seconds > LONG_S:
                    finish(i, self.long_file_emissions(path), seconds, "")
                else:  # short, or in a format soundfile cannot seek in (m4a, webm...): decoded whole
                    wave = load_audio(path)
                    if len(wave) > LONG_S * SAMPLE_RATE:
                        logits = self.windowed_emissions(lambda lo, hi, w=wave: w[lo:hi], len(wave))
                        finish(i, logits, len(wave) / SAMPLE_RATE, "")
                    else:
                        pending[i] = wave
            except Exception as e:  # an unreadable file, or an unexpected failure: the others go on
                failed(i, e)
            if sum(len(w) for w in pending.values()) > 4 * BATCH_SECONDS * SAMPLE_RATE:
                flush()
        flush()

    def long_file_emissions(self, path: Path) -> np.ndarray:
        """A long file, read window by window -> (T', V) logits for the whole file."""
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate

            def read(lo: int, hi: int) -> np.ndarray:  # 16 kHz sample positions -> that stretch, at 16 kHz
                f.seek(int(lo * sr / SAMPLE_RATE))
                return check_samples(
                    to_mono_16k(f.read(int((hi - lo) * sr / SAMPLE_RATE), dtype="float32"), sr), path, min_samples=0
                )

            return self.windowed_emissions(read, int(f.frames * SAMPLE_RATE / sr))


def window_spans(total: int, frame_samples: int) -> list[tuple[int, int, int, int | None]]:
    """How `total` samples are transcribed: (lo, hi, skip, keep) per window, read samples lo..hi and keep
    its output frames skip..skip+keep (keep None: to the end). Audio up to LONG_S is one window; longer
    goes WINDOW_S at a time with CONTEXT_S of context on each side. Every window starts on an output
    frame, so the kept frames join exactly as the whole file's would (tests/test_pipeline.py)."""
    if total <= LONG_S * SAMPLE_RATE:
        return [(0, total, 0, None)]
    step = WINDOW_S * SAMPLE_RATE // frame_samples * frame_samples  # whole output frames
    ctx = CONTEXT_S * SAMPLE_RATE // frame_samples * frame_samples
    spans = []
    for start in range(0, total, step):
        lo, hi = max(0, start - ctx), min(total, start + step + ctx)
        last = start + step >= total  # keeps every frame to the end, as the whole file would have
        spans.append((lo, hi, (start - lo) // frame_samples, None if last else step // frame_samples))
    return spans


def join_windows(logits: list[np.ndarray], spans) -> np.ndarray:
    """Each window's (T_i, V) logits (window_spans' order) -> the (T', V) logits of the whole audio."""
    pieces = [lg[skip:] if keep is None else lg[skip : skip + keep] for lg, (_, _, skip, keep) in zip(logits, spans)]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def as_wave(audio, sample_rate: int) -> np.ndarray:
    """A 1-D NumPy array or torch tensor of float samples at `sample_rate` -> float32 at 16 kHz, checked."""
    if hasattr(audio, "detach"):  # a torch tensor (duck-typed: torch need not be installed); bf16 -> float32
        audio = to_numpy(audio)
    if not isinstance(audio, np.ndarray):
        raise ASRError(f"expected a path, a NumPy array or a torch tensor, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise ASRError(f"<array>: expected 1-D mono samples, got shape {audio.shape} (average the channels first)")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ASRError(
            f"<array>: expected float samples in [-1, 1], got {audio.dtype} (for 16-bit PCM divide by 32768)"
        )
    return check_samples(to_mono_16k(audio, sample_rate), "<array>")


def seekable_seconds(path: Path) -> float | None:
    """The duration from the header of a file soundfile can seek in; None for other formats."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate
