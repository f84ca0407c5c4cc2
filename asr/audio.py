"""Read any audio file as mono float32 at 16 kHz.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis/Opus and MP3; anything else falls back to
librosa/audioread. Resampling uses soxr, which is fast and band-limited.
"""

from pathlib import Path

import numpy as np

from asr.errors import file_error

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


def _decode(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
        return audio, sr
    except sf.LibsndfileError:
        pass  # not a format libsndfile knows: try the slower generic decoder below
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
            audio, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as e:  # audioread raises many unrelated types
        raise file_error(path, f"not a readable audio file ({type(e).__name__})") from None
    return audio.T if audio.ndim == 2 else audio, sr


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
