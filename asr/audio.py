"""Read any audio file as mono float32 at 16 kHz.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis/Opus and MP3; anything else falls back to
librosa/audioread. Resampling uses soxr, which is fast and band-limited.
"""

import io
import tempfile
from pathlib import Path

import numpy as np

from asr.errors import ASRError, file_error

SAMPLE_RATE = 16000  # Hz: every model input is at this rate
MIN_SAMPLES = 400  # one 25 ms analysis window: anything shorter has no speech to recognise


def to_mono_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    """(samples,) or (samples, channels) at `sr` -> (samples,) float32 at 16 kHz."""
    import soxr

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)  # average channels: keeps both sides of a stereo interview
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ")  # what librosa's res_type="soxr_hq" calls
    return np.ascontiguousarray(audio, dtype=np.float32)


class AudioTooLong(ASRError):
    """Audio past a caller's limit on duration (decode_bytes' max_seconds)."""


def _decode(path: Path, source=None, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """`path` (or `source`, an in-memory file named `path` in errors) -> (samples[, channels]), rate. With
    `max_seconds`, no more than that (and a frame) is decoded, whatever the file holds."""
    import soundfile as sf

    try:
        with sf.SoundFile(source or str(path)) as f:
            frames = -1 if max_seconds is None else int(max_seconds * f.samplerate) + 1
            return f.read(frames, dtype="float32", always_2d=False), f.samplerate
    except sf.LibsndfileError:
        pass  # not a format libsndfile knows: try the slower generic decoder below
    if source is not None:  # librosa's fallback decoders read files: a temporary one, deleted on close
        suffix = path.suffix.lower() if path.suffix.lower() in AUDIO_EXTENSIONS else ""
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(source.getbuffer())
            f.flush()
            return _fallback(path, f.name, max_seconds)
    return _fallback(path, str(path), max_seconds)


def _fallback(path: Path, filename: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import warnings

    try:
        import librosa
    except ImportError:  # the light runtime install: soundfile's formats only
        raise file_error(
            path,
            "not a format soundfile reads (WAV, FLAC, OGG, Opus, MP3); "
            "reading others needs librosa: pip install librosa",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns about audioread; the error below says enough
            duration = None if max_seconds is None else max_seconds + 0.1
            audio, sr = librosa.load(filename, sr=None, mono=False, duration=duration)
    except Exception as e:  # audioread raises many unrelated types
        raise file_error(path, f"not a readable audio file ({type(e).__name__})") from None
    return audio.T if audio.ndim == 2 else audio, sr


def decode_bytes(data: bytes, name: str = "<upload>", max_seconds: float | None = None) -> np.ndarray:
    """An audio file's bytes -> (samples,) float32 mono at 16 kHz, read in memory. Raises ASRError naming
    `name` (only its suffix is used, to pick a decoder: it never becomes a path that is opened), and
    AudioTooLong past `max_seconds`, found without decoding more than that."""
    name = Path(name).name or "upload"
    if not data:
        raise file_error(name, "audio file is empty (0 bytes)")
    check_wav_length(data, name)
    audio, sr = _decode(Path(name), io.BytesIO(data), max_seconds)
    if audio.size == 0:
        raise file_error(name, "audio has no samples")
    if max_seconds is not None and audio.shape[0] > max_seconds * sr:
        raise AudioTooLong(f"{name}: audio longer than {max_seconds:g} s")
    return check_samples(to_mono_16k(audio, sr), name)


def check_wav_length(data: bytes, name: str) -> None:
    """A WAV upload cut short (its data chunk promises more bytes than arrived) is an error, not a shorter
    transcript: libsndfile would read what is there without a word. Sizes 0 and 0xFFFFFFFF (a recorder that
    never went back to fill them in) mean unknown and pass."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] == b"data":
            if size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data):
                raise file_error(
                    name, f"truncated WAV: its header promises {size} bytes of audio, {len(data) - pos - 8} arrived"
                )
            return
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def load_audio(path) -> np.ndarray:
    """Decode `path` -> (samples,) float32 mono at 16 kHz. Raises ASRError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "audio file not found")
    if path.stat().st_size == 0:
        raise file_error(path, "audio file is empty (0 bytes)")
    audio, sr = _decode(path)
    if audio.size == 0:
        raise file_error(path, "audio has no samples")
    return check_samples(to_mono_16k(audio, sr), path)


def check_samples(audio: np.ndarray, source, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """(samples,) at 16 kHz -> the same array, or ASRError naming `source` (a path, or shard:key) if it
    holds NaN/inf samples or fewer than `min_samples`: the one check every decoded utterance passes."""
    if not np.isfinite(audio).all():
        raise file_error(source, "audio contains NaN or infinite samples")
    if audio.shape[0] < min_samples:
        raise file_error(source, f"audio is too short ({audio.shape[0]} samples at 16 kHz, need {min_samples})")
    return audio


def audio_duration(path) -> float:
    """Duration in seconds from the file header, without decoding (falls back to decoding)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:
        return load_audio(path).shape[0] / SAMPLE_RATE


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
