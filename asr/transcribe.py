"""Audio in, text out: a loaded model, batched transcription, and long files in bounded memory.

Long files are read window by window (soundfile seeks, so an hour-long file is never decoded
whole): each window has `CONTEXT_S` of extra audio on both sides that the BiLSTM sees but whose
frames are dropped, so words cut by a window edge are still recognised from both sides.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.audio import SAMPLE_RATE, load_audio, to_mono_16k
from asr.checkpoint import load_module
from asr.decoding import greedy_decode
from asr.errors import ASRError, file_error
from asr.features import HOP_LENGTH

WINDOW_S = 20  # audio longer than this is transcribed in windows of this length (about the
#                longest training utterance: BiLSTMs generalise poorly to much longer inputs) ...
CONTEXT_S = 2  # ... each with this much context on either side
BATCH_SECONDS = 240  # audio per forward pass when transcribing many short files


@dataclass
class Result:
    path: str
    text: str = ""
    duration: float = 0.0
    error: str = ""


def pick_device(device: str = "auto") -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class Recognizer:
    """A checkpoint loaded once; transcribes arrays or files."""

    def __init__(self, checkpoint, device: str = "auto"):
        self.device = pick_device(device)
        self.module = load_module(checkpoint, self.device)
        self.tokenizer = self.module.tokenizer
        self.frame_samples = HOP_LENGTH * self.module.model.subsample.factor  # samples per output frame

    @torch.inference_mode()
    def logits(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Mono 16 kHz arrays -> one (T', V) logits tensor each, computed as one padded batch."""
        lens = torch.tensor([len(w) for w in waves])
        audio = torch.zeros(len(waves), int(lens.max()))
        for i, w in enumerate(waves):
            audio[i, : len(w)] = torch.from_numpy(w)
        logits, out_lens = self.module(audio.to(self.device), lens.to(self.device))
        return [logits[i, : out_lens[i]].float().cpu() for i in range(len(waves))]

    def decode(self, logits: torch.Tensor) -> str:
        return greedy_decode(logits[None], torch.tensor([logits.shape[0]]), self.tokenizer)[0]

    def transcribe_arrays(self, waves: list[np.ndarray]) -> list[str]:
        """Batches of similar length, at most BATCH_SECONDS of padded audio per forward pass."""
        texts = [""] * len(waves)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        batch: list[int] = []
        for i in order + [None]:
            full = i is None or (batch and len(waves[i]) * (len(batch) + 1) > BATCH_SECONDS * SAMPLE_RATE)
            if full and batch:
                for j, lg in zip(batch, self.logits([waves[j] for j in batch])):
                    texts[j] = self.decode(lg)
                batch = []
            if i is not None:
                batch.append(i)
        return texts

    def long_file_logits(self, path: Path) -> torch.Tensor:
        """Windowed pass over a long file -> (T', V) logits for the whole file."""
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            sr, total = f.samplerate, f.frames
            step = WINDOW_S * SAMPLE_RATE // self.frame_samples * self.frame_samples  # whole output frames
            ctx = CONTEXT_S * SAMPLE_RATE // self.frame_samples * self.frame_samples
            total16 = int(total * SAMPLE_RATE / sr)
            pieces = []
            for start in range(0, total16, step):
                lo, hi = max(0, start - ctx), min(total16, start + step + ctx)
                f.seek(int(lo * sr / SAMPLE_RATE))
                wave = to_mono_16k(f.read(int((hi - lo) * sr / SAMPLE_RATE), dtype="float32"), sr)
                if not np.isfinite(wave).all():  # as load_audio checks for short files
                    raise file_error(path, "audio contains NaN or infinite samples")
                logits = self.logits([wave])[0]
                skip = (start - lo) // self.frame_samples
                keep = -(-(min(start + step, total16) - start) // self.frame_samples)
                pieces.append(logits[skip : skip + keep])
        return torch.cat(pieces)

    def transcribe_file(self, path) -> str:
        path = Path(path)
        if is_long_file(path):
            return self.decode(self.long_file_logits(path))
        return self.transcribe_arrays([load_audio(path)])[0]


def transcribe_files(recognizer: Recognizer, paths, on_result=None) -> list[Result]:
    """Transcribe many files: short ones batched together, long ones windowed. A file that fails
    becomes a Result with `error` set and the rest go on; `on_result` sees each result as it is made."""
    results: dict[Path, Result] = {}
    pending: dict[Path, np.ndarray] = {}  # decoded short files waiting for a batch

    def done(result: Result):
        results[Path(result.path)] = result
        if on_result:
            on_result(result)

    def flush():
        for (p, wave), text in zip(pending.items(), recognizer.transcribe_arrays(list(pending.values()))):
            done(Result(str(p), text, len(wave) / SAMPLE_RATE))
        pending.clear()

    for p in map(Path, paths):
        try:
            if is_long_file(p):
                done(Result(str(p), recognizer.transcribe_file(p), _duration(p)))
            else:
                pending[p] = load_audio(p)
        except ASRError as e:
            done(Result(str(p), error=str(e)))
        except Exception as e:  # an unexpected decoder failure on one file must not lose the others
            done(Result(str(p), error=str(file_error(p, f"{type(e).__name__}: {e}"))))
        if sum(len(w) for w in pending.values()) > 4 * BATCH_SECONDS * SAMPLE_RATE:
            flush()
    flush()
    return [results[Path(p)] for p in paths]


def is_long_file(path: Path) -> bool:
    """Longer than one window plus its context: transcribed window by window."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return False  # not seekable by soundfile: decoded whole by load_audio
    return info.frames / info.samplerate > WINDOW_S + 2 * CONTEXT_S


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration
