"""What makes clean training audio sound like the world, batched on the training device: rooms
(reverberation from simulated impulse responses), noises (white, pink, brown, mains hum, babble) and
channels (microphone and equaliser colour, band limits, 8 kHz mu-law telephone, clipping).

Each class takes (B, S) waveforms and (B,) sample counts and returns (B, S); padding stays zero and
lengths never change, so the transcript's alignment to the audio holds. Each draws its own share of the
utterances (`prob`) from torch's global generator: a seeded run draws the same augmentation. Lossy codecs
are too slow to run per step on a CPU and are applied at synthesis instead (asr.data.synth).
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torchaudio.functional as AF

from asr.audio import SAMPLE_RATE
from asr.errors import ASRError
from asr.features import frame_mask

NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")


def real_mask(audio: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
    """(B, S), (B,) -> (B, S) float, 1 on real samples, 0 on padding."""
    return frame_mask(audio_lens, audio.shape[1]).to(audio.dtype)


def _chosen(batch: int, prob: float, device) -> torch.Tensor:
    return torch.rand(batch, device=device) < prob


def _power(audio: torch.Tensor, mask: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
    return (audio.float() ** 2 * mask).sum(1) / audio_lens.clamp(min=1).float()


# ---------------------------------------------------------------------------------------------- rooms


def room_impulse_responses(
    count: int, seed: int = 0, rt60=(0.2, 0.8), distance=(0.5, 3.0), sample_rate: int = SAMPLE_RATE, max_order: int = 30
) -> torch.Tensor:
    """`count` impulse responses of random shoebox rooms (pyroomacoustics' image source method), each
    normalised to a direct path of 1 at index 0: (count, L) float32, L = the longest one.

    A room is 3x3x2.4 to 10x8x4 m, its wall absorption set for an RT60 drawn from `rt60` (Sabine), the
    microphone anywhere 0.5 m from the walls and the talker `distance` metres from it. Reflections beyond
    `max_order` are left out (their energy is small and they cost the most), so long RT60s come out a
    little drier than asked.
    """
    import pyroomacoustics as pra

    if count < 1 or not 0 < rt60[0] <= rt60[1] or not 0 < distance[0] <= distance[1]:
        raise ASRError(
            f"features.reverb: need rooms >= 1 and ranges 0 < low <= high; got rooms {count}, "
            f"rt60 {list(rt60)}, distance {list(distance)}"
        )
    rng = np.random.default_rng([seed, 7])
    rirs, tries = [], 0
    while len(rirs) < count:
        tries += 1
        if tries > 50 * count:
            raise ASRError(
                f"features.reverb: no room of 3x3x2.4 to 10x8x4 m gives an RT60 in {list(rt60)} s with "
                f"a talker {list(distance)} m from the microphone; widen the ranges"
            )
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        try:
            absorption, order = pra.inverse_sabine(rng.uniform(*rt60), dims)
        except ValueError:  # walls cannot absorb enough for so short a reverberation in so large a room
            continue
        mic = rng.uniform(0.5, dims - 0.5)
        direction = rng.normal(size=3)
        source = mic + direction / np.linalg.norm(direction) * rng.uniform(*distance)
        if np.any(source < 0.3) or np.any(source > dims - 0.3):
            continue  # outside the room (or against a wall): draw another
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(order, max_order))
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        peak = int(np.argmax(np.abs(rir)))
        rir = rir[peak:] / rir[peak]  # the direct path at time 0: reverberation delays nothing
        rirs.append(rir.astype(np.float32))
    out = torch.zeros(count, max(len(r) for r in rirs))
    for i, r in enumerate(rirs):
        out[i, : len(r)] = torch.from_numpy(r)
    return out


class Reverb(nn.Module):
    """Convolve `prob` of the utterances with one of `rirs` (C, L), drawn per utterance; the level is
    kept (the reverberant signal gets the dry one's power). The tail past the utterance's end is cut."""

    def __init__(self, rirs: torch.Tensor, prob: float = 0.0):
        super().__init__()
        self.prob = prob
        self.register_buffer("rirs", rirs, persistent=False)  # (C, L): rebuilt from the config, not saved

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob <= 0 or len(self.rirs) == 0:
            return audio
        rows = _chosen(len(audio), self.prob, audio.device).nonzero().squeeze(1)
        if len(rows) == 0:
            return audio
        dry = audio[rows].float()
        rir = self.rirs[torch.randint(len(self.rirs), (len(rows),), device=audio.device)].float()
        wet = AF.fftconvolve(dry, rir)[:, : audio.shape[1]]
        mask = real_mask(dry, audio_lens[rows])
        wet = wet * mask
        gain = torch.sqrt(_power(dry, mask, audio_lens[rows]) / _power(wet, mask, audio_lens[rows]).clamp(min=1e-12))
        out = audio.clone()
        out[rows] = (wet * gain[:, None]).to(audio.dtype)
        return out


# --------------------------------------------------------------------------------------------- noises


def coloured_noise(batch: int, samples: int, exponent: torch.Tensor, device) -> torch.Tensor:
    """(B, S) Gaussian noise whose power falls as 1/f**exponent (B,): 0 white, 1 pink, 2 brown."""
    if bool((exponent == 0).all()):
        return torch.randn(batch, samples, device=device)
    size = 1 << (samples - 1).bit_length()  # a power-of-two FFT is several times faster
    spec = torch.fft.rfft(torch.randn(batch, size, device=device))
    hz = torch.arange(spec.shape[1], device=device, dtype=torch.float32) * SAMPLE_RATE / size
    # The slope starts at 100 Hz, where speech starts, and nothing is left below 20 Hz: a slope down to DC
    # would put most of brown noise's power into a slow drift, far quieter in the speech band than the SNR says.
    spec = spec * torch.exp(torch.log(hz.clamp(min=100))[None, :] * (-exponent[:, None] / 2)) * (hz >= 20)
    return torch.fft.irfft(spec, n=size)[:, :samples]


def mains_hum(batch: int, samples: int, device) -> torch.Tensor:
    """(B, S) hum of 50 or 60 Hz mains with 8 harmonics of random amplitude and phase."""
    period = SAMPLE_RATE // 10  # 0.1 s holds whole cycles of 50 and 60 Hz: compute it once, then tile
    t = torch.arange(period, device=device, dtype=torch.float32) / SAMPLE_RATE
    base = torch.where(torch.rand(batch, device=device) < 0.5, 50.0, 60.0)
    k = torch.arange(1, 9, device=device, dtype=torch.float32)
    amp = torch.rand(batch, 8, device=device) / k  # harmonics fade, but irregularly: buzz differs from hum
    phase = torch.rand(batch, 8, device=device) * 2 * math.pi
    waves = torch.sin(2 * math.pi * base[:, None, None] * k[None, :, None] * t[None, None, :] + phase[..., None])
    return (amp[..., None] * waves).sum(1).repeat(1, -(-samples // period))[:, :samples]


def babble(audio: torch.Tensor, audio_lens: torch.Tensor, rows: torch.Tensor, talkers: int = 4) -> torch.Tensor:
    """(B, S) batch, (B,) sample counts, (N,) row numbers -> (N, S): for each row, the sum of `talkers` other
    utterances of the batch, each at unit power (over its real samples) and circularly shifted by its own
    random offset. Speech over speech: the noise that fools a recogniser most. A batch of one has nobody
    else to hear: silence."""
    batch, samples = audio.shape
    out = torch.zeros(len(rows), samples, device=audio.device)
    if batch < 2:
        return out
    scale = 1 / _power(audio, real_mask(audio, audio_lens).float(), audio_lens).sqrt().clamp(min=1e-6)  # (B,)
    pos = torch.arange(samples, device=audio.device)
    for _ in range(talkers):
        other = (rows + torch.randint(1, batch, (len(rows),), device=audio.device)) % batch
        shift = torch.randint(samples, (len(rows), 1), device=audio.device)
        out += audio[other].float().gather(1, (pos[None, :] + shift) % samples) * scale[other, None]
    return out


class AddNoise(nn.Module):
    """Additive noise at a random SNR for `prob` of the utterances, its kind drawn per utterance from
    `kinds` (white, pink, brown, hum, babble). SNR is speech power over noise power on the real samples."""

    def __init__(self, snr_db=(10.0, 30.0), prob: float = 0.0, kinds=("white", "pink")):
        super().__init__()
        unknown = sorted(set(kinds) - set(NOISE_KINDS))
        if unknown or not kinds:
            raise ValueError(f"noise kinds must be some of {', '.join(NOISE_KINDS)}; got {list(kinds)}")
        self.snr_db, self.prob, self.kinds = tuple(snr_db), prob, tuple(kinds)

    def forward(
        self, audio: torch.Tensor, audio_lens: torch.Tensor, snr_db: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, S), (B,) -> (B, S). `snr_db` (B,) fixes the SNR (tests); else it is drawn."""
        if not self.training or self.prob <= 0:
            return audio
        batch, samples = audio.shape
        device = audio.device
        rows = _chosen(batch, self.prob, device).nonzero().squeeze(1)  # noise is made for these rows only
        if len(rows) == 0:
            return audio
        kind = torch.randint(len(self.kinds), (len(rows),), device=device)
        exponent = torch.tensor([{"pink": 1.0, "brown": 2.0}.get(k, 0.0) for k in self.kinds], device=device)[kind]
        noise = coloured_noise(len(rows), samples, exponent, device)
        for name in ("hum", "babble"):
            some = (kind == self.kinds.index(name)).nonzero().squeeze(1) if name in self.kinds else []
            if len(some):
                noise[some] = (
                    mains_hum(len(some), samples, device) if name == "hum" else babble(audio, audio_lens, rows[some])
                )
        mask, lens = real_mask(audio[rows], audio_lens[rows]).float(), audio_lens[rows]
        snr = snr_db[rows] if snr_db is not None else torch.empty(len(rows), device=device).uniform_(*self.snr_db)
        gain = torch.sqrt(
            _power(audio[rows], mask, lens) / _power(noise, mask, lens).clamp(min=1e-12) / 10 ** (snr / 10)
        )
        out = audio.clone()
        out[rows] = audio[rows] + (noise * gain[:, None] * mask).to(audio.dtype)
        return out


# ------------------------------------------------------------------------------------------- channels


def random_response(batch: int, bins: int, device, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, bins) magnitude responses of random microphones and equalisers: a high-pass at 50-400 Hz, a
    low-pass at 3.5-8 kHz (4th-order Butterworth magnitudes) and three +-8 dB bells on a log-frequency axis."""
    f = torch.linspace(0, sample_rate / 2, bins, device=device)
    rand = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(batch, *shape, device=device)  # noqa: E731
    low_cut, high_cut = rand(50, 400)[:, None], rand(3500, sample_rate / 2)[:, None]
    response = 1 / torch.sqrt(1 + (low_cut / f.clamp(min=1)) ** 8) / torch.sqrt(1 + (f / high_cut) ** 8)
    octave = torch.log2(f.clamp(min=20) / 1000)  # octaves from 1 kHz
    centre, width, gain_db = rand(-3.5, 2.5, 3), rand(0.3, 1.5, 3), rand(-8, 8, 3)
    bells = (
        gain_db[:, :, None] * torch.exp(-0.5 * ((octave[None, None, :] - centre[:, :, None]) / width[:, :, None]) ** 2)
    ).sum(1)
    return response * 10 ** (bells / 20)


def telephone(audio: torch.Tensor) -> torch.Tensor:
    """(B, S) -> (B, S): through an 8 kHz, 8-bit mu-law line (G.711) and back to 16 kHz."""
    peak = audio.abs().amax(1, keepdim=True).clamp(min=1e-6)
    narrow = AF.resample(audio.float() / peak, SAMPLE_RATE, 8000)
    narrow = AF.mu_law_decoding(AF.mu_law_encoding(narrow.clamp(-1, 1), 256), 256)
    return AF.resample(narrow, 8000, SAMPLE_RATE)[:, : audio.shape[1]] * peak


class Channel(nn.Module):
    """What lies between the air and the file: `prob` of the utterances get a random microphone/equaliser
    response with band limits, `telephone` of them an 8 kHz mu-law line, `clip` of them are clipped at 20-70%
    of their peak (an overdriven input). Each draw is independent; the speech level is kept. The response is
    applied by FFT over the batch's length (circular: a few ms of a row's end can ring into its start, which
    the frontend's taper then fades)."""

    def __init__(self, prob: float = 0.0, telephone: float = 0.0, clip: float = 0.0):
        super().__init__()
        self.prob, self.telephone, self.clip = prob, telephone, clip

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
        if not self.training or max(self.prob, self.telephone, self.clip) <= 0:
            return audio
        batch, samples = audio.shape
        mask = real_mask(audio, audio_lens).float()
        out = audio.float().clone()  # rows are replaced in place below
        before = _power(out, mask, audio_lens)
        rows = _chosen(batch, self.prob, audio.device).nonzero().squeeze(1)
        if len(rows):
            spec = torch.fft.rfft(out[rows])
            out[rows] = torch.fft.irfft(spec * random_response(len(rows), spec.shape[1], audio.device), n=samples)
        rows = _chosen(batch, self.telephone, audio.device).nonzero().squeeze(1)
        if len(rows):
            out[rows] = telephone(out[rows])
        rows = _chosen(batch, self.clip, audio.device).nonzero().squeeze(1)
        if len(rows):
            level = out[rows].abs().amax(1, keepdim=True) * (0.2 + 0.5 * torch.rand(len(rows), 1, device=audio.device))
            out[rows] = torch.maximum(torch.minimum(out[rows], level), -level)
        out = out * mask
        out = out * torch.sqrt(before / _power(out, mask, audio_lens).clamp(min=1e-12))[:, None]
        return out.to(audio.dtype)
