"""Rooms, noises and channels (asr.training.acoustics): each effect pinned on a signal whose answer is known."""

import pytest
import torch

from asr.audio import SAMPLE_RATE
from asr.errors import ASRError
from asr.training.acoustics import (
    AddNoise,
    Channel,
    Reverb,
    babble,
    coloured_noise,
    mains_hum,
    real_mask,
    room_impulse_responses,
    telephone,
)


def _band_power(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """(B, S) -> (B,) power between lo and hi Hz."""
    spec = torch.fft.rfft(x).abs() ** 2
    f = torch.fft.rfftfreq(x.shape[1], 1 / SAMPLE_RATE)
    return spec[:, (f >= lo) & (f < hi)].sum(1)


def _speechlike(batch=3, samples=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / SAMPLE_RATE
    tones = sum(torch.sin(2 * torch.pi * f * t + torch.rand(1, generator=g) * 6) for f in (180, 720, 1500, 2600))
    return (tones[None] * (0.05 + torch.rand(batch, 1, generator=g) * 0.2)).repeat(1, 1)


def test_a_known_room_smears_an_impulse_into_its_echo_and_keeps_level_and_padding():
    rir = torch.zeros(1, 200)
    rir[0, 0], rir[0, 120] = 1.0, 0.5  # the direct path, one echo 7.5 ms later at half amplitude
    audio = torch.zeros(2, 4000)
    audio[:, 1000] = 1.0
    lens = torch.tensor([4000, 1100])  # row 1 ends 100 samples after the click: its echo is cut
    out = Reverb(rir, prob=1.0).train()(audio, lens)
    assert out[0, 1120] / out[0, 1000] == pytest.approx(0.5)
    assert out[0].abs().gt(1e-6).sum() == 2  # nothing but the click and its echo
    assert out[0].pow(2).sum() == pytest.approx(1.0)  # the dry signal's power
    assert out[1, 1100:].abs().max() == 0  # padding stays silent
    assert torch.equal(Reverb(rir, prob=1.0).eval()(audio, lens), audio)
    assert torch.equal(Reverb(rir, prob=0.0).train()(audio, lens), audio)


def test_simulated_rooms_start_with_the_direct_path_decay_as_asked_and_follow_the_seed():
    dry = room_impulse_responses(6, seed=1, rt60=(0.2, 0.25), distance=(1.0, 1.0))
    wet = room_impulse_responses(6, seed=1, rt60=(0.8, 0.9), distance=(1.0, 1.0))
    assert torch.equal(dry, room_impulse_responses(6, seed=1, rt60=(0.2, 0.25), distance=(1.0, 1.0)))
    assert not torch.equal(
        dry[:, :100], room_impulse_responses(6, seed=2, rt60=(0.2, 0.25), distance=(1.0, 1.0))[:, :100]
    )
    assert torch.all(dry[:, 0] == 1) and torch.all(wet[:, 0] == 1)

    def t60(rirs):  # Schroeder backward integration: time from -5 to -25 dB, times 3
        energy = rirs.pow(2).flip(1).cumsum(1).flip(1)
        db = 10 * torch.log10(energy / energy[:, :1])
        return (((db > -25).sum(1) - (db > -5).sum(1)).float() * 3 / SAMPLE_RATE).median().item()

    assert 0.1 < t60(dry) < 0.35 and 0.55 < t60(wet) < 1.0
    with pytest.raises(ASRError, match="widen the ranges"):  # no room that small reverberates that long
        room_impulse_responses(2, rt60=(0.05, 0.06), distance=(9.0, 9.5))
    with pytest.raises(ASRError, match="rooms >= 1"):
        room_impulse_responses(0)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum", "babble"])
def test_each_noise_lands_at_the_snr_asked_and_leaves_padding_silent(kind):
    torch.manual_seed(0)
    audio = _speechlike(4, 8000)
    lens = torch.tensor([8000, 4000, 6000, 3000])
    audio *= real_mask(audio, lens)
    noise = AddNoise(prob=1.0, kinds=[kind]).train()
    added = noise(audio, lens, snr_db=torch.tensor([0.0, 5.0, 10.0, 20.0])) - audio
    for row, (n, snr) in enumerate(zip(lens.tolist(), (0.0, 5.0, 10.0, 20.0))):
        measured = 10 * torch.log10(audio[row, :n].pow(2).mean() / added[row, :n].pow(2).mean())
        assert measured.item() == pytest.approx(snr, abs=0.01)
        assert added[row, n:].abs().sum() == 0


def test_noise_colours_and_hum_have_their_spectra():
    torch.manual_seed(0)
    audio, lens = torch.ones(1, 32000) * 0.1, torch.tensor([32000])
    low, high = {}, {}
    for kind in ("white", "pink", "brown"):
        added = AddNoise(prob=1.0, kinds=[kind]).train()(audio, lens, snr_db=torch.tensor([0.0])) - audio
        low[kind], high[kind] = _band_power(added, 200, 400).item(), _band_power(added, 3200, 6400).item()
    # per octave: white doubles with each octave up (x16 over 4 octaves), pink stays, brown halves
    assert low["white"] / high["white"] == pytest.approx(1 / 16, rel=0.3)
    assert low["pink"] / high["pink"] == pytest.approx(1, rel=0.3)
    assert low["brown"] / high["brown"] == pytest.approx(16, rel=0.3)
    hum = mains_hum(4, 32000, "cpu")
    harmonic = sum(_band_power(hum, f - 2, f + 3) for f in range(50, 481, 10) if f % 50 == 0 or f % 60 == 0)
    assert torch.all(harmonic / _band_power(hum, 0, 8000) > 0.99)  # all of it on 50 or 60 Hz harmonics


def test_babble_is_other_talkers_of_the_batch():
    torch.manual_seed(0)
    audio = torch.zeros(2, 1000)
    audio[1, :500] = 1.0  # row 0 is silent, row 1 speaks for 500 samples of its 500
    lens = torch.tensor([1000, 500])
    mix = babble(audio, lens, torch.tensor([0, 1]), talkers=1)
    assert mix[1].abs().max() == 0  # row 1 hears only row 0: silence
    assert mix[0].abs().max() == pytest.approx(1.0) and (mix[0] != 0).sum() == 500  # unit power over its 500 samples
    assert babble(audio[:1], lens[:1], torch.tensor([0])).abs().max() == 0  # a batch of one has nobody else to hear


def test_noise_kinds_mix_in_one_batch_and_the_input_is_left_alone():
    torch.manual_seed(1)
    audio = _speechlike(8, 16000)
    lens = torch.full((8,), 16000)
    before = audio.clone()
    noise = AddNoise(prob=1.0, kinds=["hum", "babble", "brown"]).train()
    added = noise(audio, lens, snr_db=torch.full((8,), 10.0)) - audio
    assert torch.equal(audio, before)
    hum_share = torch.stack([_band_power(added, f - 2, f + 3) for f in (50, 60, 100, 120, 150, 180)]).sum(
        0
    ) / _band_power(added, 0, 8000)
    assert (hum_share > 0.5).any() and (hum_share < 0.5).any()  # some rows hum, others got babble or brown noise
    brown = coloured_noise(4, 32000, torch.full((4,), 2.0), "cpu")
    assert torch.all(
        _band_power(brown, 100, 8000) > 0.4 * _band_power(brown, 0, 8000)
    )  # in the speech band, not a drift


def test_acoustics_run_in_fp32_under_autocast_and_keep_the_input():
    from asr.config import Config
    from asr.training.augment import Augmentation

    features = Config.from_dict(
        {
            "features": {
                "reverb": {"prob": 1.0, "rooms": 2},
                "noise": {"prob": 1.0},
                "channel": {"prob": 1.0, "telephone": 1.0, "clip": 1.0},
            }
        }
    ).features
    augment = Augmentation(features).train()
    audio, lens = _speechlike(2, 8000).to(torch.bfloat16), torch.tensor([8000, 6000])
    before = audio.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = augment.waveform(audio, lens)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and out[1, 6000:].abs().max() == 0
    assert torch.equal(audio, before)


def test_telephone_keeps_length_and_cuts_the_band_above_4_khz():
    audio = _speechlike(2, 16000)
    audio[:, ::7] += 0.05  # broadband energy above 4 kHz
    out = telephone(audio)
    assert out.shape == audio.shape
    assert torch.all(_band_power(out, 4200, 8000) < 0.01 * _band_power(audio, 4200, 8000))
    assert torch.all(_band_power(out, 300, 3000) > 0.8 * _band_power(audio, 300, 3000))


def test_channel_colours_clips_keeps_level_and_follows_the_seed():
    audio = _speechlike(4, 16000)
    lens = torch.tensor([16000, 16000, 12000, 16000])
    audio *= real_mask(audio, lens)
    for channel in (Channel(prob=1.0), Channel(telephone=1.0), Channel(clip=1.0)):
        channel.train()
        torch.manual_seed(3)
        out = channel(audio, lens)
        torch.manual_seed(3)
        assert torch.equal(out, channel(audio, lens))
        assert out.shape == audio.shape and out[2, 12000:].abs().max() == 0
        assert torch.allclose(out.pow(2).sum(1) / lens, audio.pow(2).sum(1) / lens, rtol=1e-3)
        assert not torch.allclose(out, audio, atol=1e-3)
    clipped = Channel(clip=1.0).train()(audio, lens)
    crest = lambda x: x.abs().amax(1) / x.pow(2).mean(1).sqrt()  # noqa: E731
    assert torch.all(crest(clipped) < 0.9 * crest(audio))
    assert torch.equal(Channel(prob=1.0).eval()(audio, lens), audio)


def test_augmentation_builds_rooms_noises_and_channels_from_the_config():
    from asr.config import Config
    from asr.training.augment import Augmentation

    features = Config.from_dict(
        {
            "features": {
                "reverb": {"prob": 0.5, "rooms": 3},
                "noise": {"prob": 0.3, "kinds": ["babble", "hum"]},
                "channel": {"prob": 0.2, "telephone": 0.1, "clip": 0.05},
            }
        }
    ).features
    augment = Augmentation(features, seed=0)
    assert augment.reverb.rirs.shape[0] == 3 and augment.reverb.prob == 0.5
    assert augment.noise.kinds == ("babble", "hum")
    assert (augment.channel.prob, augment.channel.telephone, augment.channel.clip) == (0.2, 0.1, 0.05)
    with pytest.raises(ValueError, match="noise kinds"):
        AddNoise(kinds=["thunder"])
