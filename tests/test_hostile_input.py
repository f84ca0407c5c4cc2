"""Hostile audio and text: every case ends in a result or a clear one-line ASRError naming the file,
never another exception, a hang (hypothesis deadline) or a huge allocation."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.audio import MIN_SAMPLES, SAMPLE_RATE, load_audio
from asr.errors import ASRError
from asr.text import normalize

FUZZ = settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_clear_error(path):
    """load_audio's contract: mono float32 16 kHz finite audio, or an ASRError naming the file."""
    try:
        audio = load_audio(path)
    except ASRError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return None
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) >= MIN_SAMPLES
    assert np.isfinite(audio).all()
    return audio


def encoded(audio: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.wav"
    path.write_bytes(data)
    read_or_clear_error(path)


@FUZZ
@given(
    fmt=st.sampled_from([("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "FLOAT"), ("OGG", "VORBIS")]),
    cut=st.floats(0.0, 1.0),
)
def test_truncated_files(tmp_path, fmt, cut):
    audio = np.sin(np.arange(SAMPLE_RATE) / 7.0).astype(np.float32) * 0.5
    data = encoded(audio, SAMPLE_RATE, *fmt)
    path = tmp_path / f"cut.{fmt[0].lower()}"
    path.write_bytes(data[: int(len(data) * cut)])
    read_or_clear_error(path)


@FUZZ
@given(frames=st.integers(0, 2**31 - 1), rate=st.integers(1, 2**31 - 1), channels=st.integers(1, 2**15))
def test_wav_headers_that_lie(tmp_path, frames, rate, channels):
    """A RIFF header may claim any size, rate and channel count over a few real bytes."""
    body = np.zeros(64, dtype="<i2").tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", (36 + frames * 2) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2 & 0xFFFFFFFF, channels * 2 & 0xFFFF, 16)
    )
    path = tmp_path / "liar.wav"
    path.write_bytes(header + b"data" + struct.pack("<I", frames * 2 & 0xFFFFFFFF) + body)
    read_or_clear_error(path)


@pytest.mark.parametrize("samples", [0, 1, MIN_SAMPLES - 1])
def test_zero_one_and_too_few_samples(tmp_path, samples):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(samples, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(ASRError, match="short|no samples|empty"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(ASRError, match="NaN or infinite"):
        load_audio(path)


def test_eight_channels_at_192_khz(tmp_path):
    t = np.arange(192000) / 192000
    audio = np.stack([np.sin(2 * np.pi * 440 * t) * (c + 1) / 10 for c in range(8)], axis=1).astype(np.float32)
    path = tmp_path / "multi.flac"
    sf.write(path, audio, 192000, subtype="PCM_24")
    out = read_or_clear_error(path)
    assert out is not None and abs(len(out) - SAMPLE_RATE) <= 2


@settings(max_examples=300, deadline=1000)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_normalize_any_unicode(text):
    out = normalize(text)
    assert set(out) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' ")
    assert out == out.strip() and "  " not in out
    assert normalize(out) == out  # idempotent
