import librosa
import numpy as np
import torch

from asr.dims import ModelDims
from asr.features import HOP_LENGTH, N_FFT, Frontend, LogMel, normalize_features, num_frames, taper_edges
from asr.training.acoustics import AddNoise
from asr.training.augment import Augmentation, FrequencyWarp, SpecAugment

N_MELS = ModelDims.n_mels

# Stated tolerance: torchaudio (float32 FFT) vs librosa (float64 reference) log-mel energies agree
# within 1e-3 in natural-log units (0.004 dB) wherever the energy is above 1e-6 of the peak (below that, float32
# rounding dominates).
TOLERANCE = 1e-3


def _speechlike(seconds=1.3, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.3 * t)) + 0.1 * np.sin(2 * np.pi * 1800 * t)
    return (tone * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_mel(audio):
    return librosa.feature.melspectrogram(
        y=audio.astype(np.float64),
        sr=16000,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=N_FFT,
        n_mels=80,
        center=True,
        pad_mode="constant",
        power=2.0,
    )


def test_log_mel_matches_librosa():
    audio = _speechlike()
    ours = LogMel(N_MELS, 80.0)(torch.from_numpy(audio)[None])[0].numpy()  # (frames, 80)
    ref_mel = _librosa_mel(audio)
    ref = np.log(ref_mel + ref_mel.max() * 1e-8).T  # the floor: 80 dB below the peak
    assert ours.shape == ref.shape == (num_frames(torch.tensor(audio.size)).item(), 80)
    loud = ref_mel.T > 1e-6 * ref_mel.max()
    assert loud.mean() > 0.9
    assert np.abs(ours - ref)[loud].max() < TOLERANCE
    narrow = LogMel(N_MELS, dynamic_range_db=60.0)(torch.from_numpy(audio)[None])[
        0
    ].numpy()  # features.dynamic_range_db
    assert np.abs(narrow - np.log(ref_mel + ref_mel.max() * 1e-6).T)[loud].max() < TOLERANCE


def test_quiet_recording_gets_the_same_normalised_features_as_a_loud_one():
    audio = torch.from_numpy(_speechlike())[None]
    lengths = num_frames(torch.tensor([audio.shape[1]]))
    loud, quiet = (normalize_features(LogMel(N_MELS, 80.0)(audio * gain), lengths) for gain in (1.0, 0.003))  # -50 dB
    assert (loud - quiet).abs().max() < 1e-3
    # Guard: a fixed floor (the 1e-6 of earlier versions) would have gated the quiet copy.
    mel = LogMel(N_MELS, 80.0).mel
    old_loud, old_quiet = (
        normalize_features(torch.log(mel(audio * gain) + 1e-6).transpose(1, 2), lengths) for gain in (1.0, 0.003)
    )
    assert (old_loud - old_quiet).abs().max() > 0.5


def test_padding_does_not_change_features_of_real_frames():
    audio = torch.from_numpy(_speechlike(0.8))
    alone = LogMel(N_MELS, 80.0)(audio[None])[0]
    padded = LogMel(N_MELS, 80.0)(torch.nn.functional.pad(audio, (0, 8000))[None])[0]
    assert torch.allclose(alone, padded[: alone.shape[0]], atol=1e-4)


def test_normalize_uses_real_frames_only_and_zeroes_padding():
    feats = torch.randn(2, 50, 80) * 3 + 7
    lengths = torch.tensor([50, 30])
    out = normalize_features(feats, lengths)
    assert torch.allclose(out[1, :30].mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(out[1, :30].std(0, unbiased=False), torch.ones(80), atol=1e-3)
    assert out[1, 30:].abs().max() == 0
    assert torch.allclose(out[1, :30], normalize_features(feats[1:, :30], lengths[1:])[0], atol=1e-5)


def test_per_utterance_normalize_keeps_the_spectral_shape_and_drops_the_level():
    # A steady vowel-like spectrum: per-bin normalisation leaves only the noise around it; one mean and
    # variance for the whole utterance keeps its shape and removes only the level (a gain adds a constant in log).
    torch.manual_seed(0)
    shape = torch.linspace(-3.0, 3.0, 80) ** 2  # (n_mels,)
    feats = torch.stack([shape + 4.0, shape - 6.0])[:, None, :].repeat(1, 40, 1) + 0.01 * torch.randn(2, 40, 80)
    lengths = torch.tensor([40, 25])
    per_bin = normalize_features(feats, lengths)  # only the noise is left of each frame
    assert abs(torch.corrcoef(torch.stack([per_bin[0, 0], shape]))[0, 1]) < 0.5
    out = normalize_features(feats, lengths, per_bin=False)
    assert torch.corrcoef(torch.stack([out[0, 0], shape]))[0, 1] > 0.99
    assert torch.allclose(out[0, :25], out[1, :25], atol=0.05)  # level removed
    assert out[1, 25:].abs().max() == 0
    assert abs(out[1, :25].mean()) < 1e-4 and abs(out[1, :25].std(unbiased=False) - 1) < 1e-3


def test_specaugment_masks_inside_each_utterance_and_only_in_training():
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=0.2)
    feats = torch.ones(8, 100, 80)
    lengths = torch.tensor([100, 90, 80, 70, 60, 50, 40, 30])
    aug.train()
    out = aug(feats, lengths)
    masked = out == 0
    assert masked.any()
    for i, n in enumerate(lengths.tolist()):
        time_masked = masked[i].all(dim=1)  # whole frames masked
        assert time_masked.sum() <= 2 * int(0.2 * n) + 2
        freq_masked = masked[i, :n].all(dim=0)  # whole bins masked
        assert freq_masked.sum() <= 20
    aug.eval()
    assert torch.equal(aug(feats, lengths), feats)


def test_frequency_warp_moves_a_formant_by_alpha_and_only_in_training():
    warp = FrequencyWarp(N_MELS, max_warp=0.1)
    centres = warp.centres
    k = 40  # a peak at ~1.6 kHz, below VTLP's 4.8 kHz boundary: it should move to alpha x its frequency
    feats = -((torch.arange(N_MELS) - k).float() ** 2)[None, None, :].repeat(2, 5, 1)  # (2, 5, n_mels)
    alpha = torch.tensor([0.9, 1.1])
    out = warp(feats, alpha)
    for row, a in enumerate(alpha):
        peak_hz = centres[out[row, 0].argmax()]
        assert abs(peak_hz - a * centres[k]) <= 0.5 * (centres[k + 1] - centres[k - 1]), (a, peak_hz)
    assert torch.allclose(warp(feats, torch.ones(2)), feats, atol=1e-4)  # alpha 1: unchanged
    assert torch.equal(out[:, 0], out[:, 4])  # same warp on every frame of an utterance
    # the warp is piecewise linear up to Nyquist, which stays put: a peak in the top bin stays there
    top = -((torch.arange(N_MELS) - (N_MELS - 1)).float() ** 2)[None, None, :].repeat(2, 1, 1)
    assert (warp(top, alpha)[:, 0].argmax(-1) == N_MELS - 1).all()
    warp.eval()
    assert torch.equal(warp(feats), feats)
    warp.train()
    assert not torch.equal(warp(feats), feats)


def test_add_noise_hits_the_drawn_snr_leaves_padding_silent_and_only_trains():
    torch.manual_seed(0)
    noise = AddNoise(snr_db=(10.0, 10.0), prob=1.0)
    audio = torch.randn(4, 8000) * 0.1
    lengths = torch.tensor([8000, 4000, 6000, 50])
    for row, n in enumerate(lengths):
        audio[row, n:] = 0
    added = noise(audio, lengths) - audio
    for row, n in enumerate(lengths):
        snr = (audio[row, :n] ** 2).mean() / (added[row, :n] ** 2).mean()
        assert abs(10 * torch.log10(snr).item() - 10.0) < 0.01
        assert added[row, n:].abs().max().item() == 0 if n < 8000 else True
    noise.eval()
    assert torch.equal(noise(audio, lengths), audio)
    assert torch.equal(AddNoise(prob=0.0).train()(audio, lengths), audio)


def test_taper_fades_each_utterance_at_its_own_edges_and_keeps_the_middle():
    audio = torch.ones(2, 1000)
    audio[1, 600:] = 0  # the second utterance is 600 samples, then padding
    lens = torch.tensor([1000, 600])
    out = taper_edges(audio, lens, 160)
    assert out[0, 0] < 0.01 and out[0, 999] < 0.01 and out[1, 599] < 0.01  # each one's own ends
    assert torch.equal(out[:, 160:440], audio[:, 160:440])  # the middle untouched
    assert out[1, 600:].abs().max() == 0
    assert torch.all(out[0, 1:160] >= out[0, :159])  # a monotone fade-in
    assert torch.allclose(out[1, :600], taper_edges(audio[1:, :600], lens[1:], 160)[0])  # batch-independent


def test_taper_removes_the_click_of_a_clip_cut_mid_sound():
    t = torch.arange(8000) / 16000
    cut = torch.sin(2 * torch.pi * 300 * t)[None]  # a 300 Hz tone that stops abruptly
    lens = torch.tensor([cut.shape[1]])
    high = slice(50, 80)  # mel bins well above 300 Hz (about 2.5-8 kHz)
    raw, tapered = (LogMel(N_MELS, 80.0)(x)[0, :, high].exp().sum(-1) for x in (cut, taper_edges(cut, lens, 160)))
    assert raw[-1] > 30 * raw[-10]  # the step: broadband energy in the last frame, not in the middle
    assert tapered[-1] < 2 * tapered[-10]  # faded out: no click


def test_frontend_is_taper_log_mel_and_normalisation():
    """The model's input chain (asr.features.Frontend), without augmentation, is the pieces above in turn."""
    audio = torch.from_numpy(_speechlike(1.0))[None].repeat(2, 1)
    lens = torch.tensor([16000, 11000])
    audio[1, 11000:] = 0
    for normalize, per_bin in (("per_bin", True), ("per_utterance", False)):
        frontend = Frontend(N_MELS, 80.0, taper_ms=10.0, normalize=normalize)
        feats, frames = frontend(audio, lens)
        assert torch.equal(frames, num_frames(lens))
        expected = normalize_features(LogMel(N_MELS, 80.0)(taper_edges(audio, lens, 160)), frames, per_bin)
        assert torch.allclose(feats, expected, atol=1e-5)
        alone, _ = frontend(audio[1:, :11000], lens[1:])  # padding changes nothing of the real frames
        assert torch.allclose(alone[0], feats[1, : frames[1]], atol=1e-4)
    padded, padded_frames = Frontend(N_MELS, 80.0, 10.0, "per_bin", pad_samples=640)(
        audio, lens
    )  # edge padding: silence on both sides
    assert torch.equal(padded_frames, num_frames(lens + 1280))
    try:
        Frontend(N_MELS, 80.0, 10.0, normalize="per_word")
    except ValueError as e:
        assert "per_bin or per_utterance" in str(e)
    else:
        raise AssertionError("Frontend accepted normalize='per_word'")


def test_augmentation_follows_the_features_config_and_is_off_in_eval():
    from asr.config import Config

    features = Config.from_dict(
        {
            "features": {
                "vtlp": 0.1,
                "noise": {"snr_db": [5, 15], "prob": 0.5},
                "specaugment": {"freq_masks": 1, "time_width": 0.2},
            }
        }
    ).features
    augment = Augmentation(features)
    assert (augment.noise.snr_db, augment.noise.prob, augment.warp.max_warp) == ((5.0, 15.0), 0.5, 0.1)
    assert (augment.specaugment.freq_masks, augment.specaugment.freq_width, augment.specaugment.time_width) == (
        1,
        15,
        0.2,
    )
    torch.manual_seed(0)
    audio, lens = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 8000])
    frontend = Frontend(N_MELS, 80.0, 10.0, "per_bin")
    plain, _ = frontend(audio, lens)
    augment.eval()
    assert torch.equal(frontend(audio, lens, augment)[0], plain)
    augment.train()
    assert not torch.allclose(frontend(audio, lens, augment)[0], plain)
