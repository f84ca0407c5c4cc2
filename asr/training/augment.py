"""Training-only augmentation on the device: rooms, noises and channels on the waveform (asr.training.acoustics),
VTLP on the log-mel, SpecAugment on the normalised features. `Augmentation` plugs into the inference model's
input chain (asr.features.Frontend) at those three points; the inference model itself never holds any of it."""

import math

import torch
import torch.nn as nn

from asr.audio import SAMPLE_RATE
from asr.config import FeaturesConfig
from asr.training.acoustics import AddNoise, Channel, Reverb, room_impulse_responses


class Augmentation(nn.Module):
    """The three hooks Frontend calls in training; each is the identity in eval mode."""

    def __init__(self, features: FeaturesConfig, seed: int = 0):
        super().__init__()
        room = features.reverb
        rirs = (
            room_impulse_responses(room.rooms, seed, room.rt60, room.distance) if room.prob > 0 else torch.zeros(0, 1)
        )
        self.reverb = Reverb(rirs, room.prob)
        self.noise = AddNoise(features.noise.snr_db, features.noise.prob, features.noise.kinds)
        self.channel = Channel(features.channel.prob, features.channel.telephone, features.channel.clip)
        self.warp = FrequencyWarp(features.n_mels, max_warp=features.vtlp)
        self.specaugment = SpecAugment(**vars(features.specaugment))

    def waveform(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
        # The order sound takes: a room, noise in it, then the microphone and line that record both. In fp32
        # whatever the training precision: resampling and mu-law lose too much in 16 bits.
        with torch.autocast(audio.device.type, enabled=False):
            return self._acoustics(audio.float(), audio_lens)

    def _acoustics(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> torch.Tensor:
        audio = self.reverb(audio, audio_lens)
        audio = self.noise(audio, audio_lens)
        return self.channel(audio, audio_lens)

    def log_mel(self, feats: torch.Tensor) -> torch.Tensor:
        return self.warp(feats)

    def features(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.specaugment(feats, lengths)


_MEL_LOG_STEP = math.log(6.4) / 27  # Slaney: 27 mel per factor 6.4 above 1 kHz (= 15 mel)


def slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """The Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    return torch.where(mel >= 15, 1000 * torch.exp(_MEL_LOG_STEP * (mel - 15)), mel * 200 / 3)


def slaney_hz_to_mel(hz: float) -> float:
    return 15 + math.log(hz / 1000) / _MEL_LOG_STEP if hz >= 1000 else hz * 3 / 200


class FrequencyWarp(nn.Module):
    """Vocal tract length perturbation (Jaitly & Hinton 2013) on log-mel features, training only.

    Each utterance's frequency axis is scaled by a random alpha in [1 - max_warp, 1 + max_warp]
    (piecewise linear, so that 0 and the Nyquist frequency stay put), which moves formants the way a
    shorter or longer vocal tract does: a cheap stand-in for speakers the corpus does not have. Done
    by linear interpolation between mel bins, on the device, without touching the audio or its length.
    """

    def __init__(self, n_mels: int, max_warp: float = 0.0, boundary_hz: float = 4800.0):
        super().__init__()
        self.max_warp, self.boundary_hz, self.nyquist = max_warp, boundary_hz, SAMPLE_RATE / 2
        top_mel = slaney_hz_to_mel(self.nyquist)
        centres = slaney_mel_to_hz(torch.linspace(0, top_mel, n_mels + 2, dtype=torch.float64))[1:-1]
        self.register_buffer("centres", centres.float(), persistent=False)  # (n_mels,) Hz; not in checkpoints

    def forward(self, feats: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, n_mels) -> (B, T, n_mels), each row warped by its own alpha (random unless given, (B,))."""
        if alpha is None:
            if not self.training or self.max_warp <= 0:
                return feats
            alpha = 1 + (2 * torch.rand(feats.shape[0], device=feats.device) - 1) * self.max_warp
        bins = feats.shape[2]
        source = self._source_hz(self.centres[None, :], alpha[:, None])  # (B, n_mels): where each output bin reads
        hi = torch.searchsorted(self.centres, source.contiguous()).clamp(1, bins - 1)
        lo = hi - 1
        frac = ((source - self.centres[lo]) / (self.centres[hi] - self.centres[lo])).clamp(0, 1)
        lo_vals = feats.gather(2, lo[:, None, :].expand_as(feats))
        hi_vals = feats.gather(2, hi[:, None, :].expand_as(feats))
        return lo_vals + (hi_vals - lo_vals) * frac[:, None, :]

    def _source_hz(self, out_hz: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The inverse of VTLP's warp f -> alpha*f below the boundary, linear to Nyquist above it."""
        boundary = self.boundary_hz * torch.clamp(alpha, max=1) / alpha
        warped_boundary = alpha * boundary
        above = self.nyquist - (self.nyquist - out_hz) * (self.nyquist - boundary) / (self.nyquist - warped_boundary)
        return torch.where(out_hz <= warped_boundary, out_hz / alpha, above)


class SpecAugment(nn.Module):
    """Random frequency and time masks, drawn independently for each utterance (Park et al. 2019).

    Time-mask width is a fraction of each utterance's own length so short and long utterances are
    masked alike. Masked values are set to 0, the mean after normalisation.
    """

    def __init__(self, freq_masks=2, freq_width=15, time_masks=2, time_width=0.05):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return feats
        batch, frames, bins = feats.shape
        keep = torch.ones_like(feats, dtype=torch.bool)
        for _ in range(self.freq_masks):
            keep &= ~self._band(
                batch,
                bins,
                torch.full((batch,), bins, device=feats.device),
                torch.full((batch,), self.freq_width, device=feats.device),
            ).unsqueeze(1)
        widths = (lengths.float() * self.time_width).long().clamp(min=1)
        for _ in range(self.time_masks):
            keep &= ~self._band(batch, frames, lengths, widths).unsqueeze(2)
        return feats * keep

    @staticmethod
    def _band(batch, size, lengths, max_widths):
        """(batch, size) bool: one random band [start, start + width) per row, inside its length."""
        device = lengths.device
        width = (torch.rand(batch, device=device) * (max_widths + 1).float()).long()
        start = (torch.rand(batch, device=device) * (lengths - width).clamp(min=1).float()).long()
        pos = torch.arange(size, device=device)[None, :]
        return (pos >= start[:, None]) & (pos < (start + width)[:, None])
