"""Log-mel features, per-utterance normalisation and SpecAugment, as nn.Modules.

They run wherever the model runs (the GPU in training), on padded batches of raw waveforms, so
the data loader only decodes audio. Parameters match librosa's defaults for a 25 ms / 10 ms mel
filterbank (Slaney mel scale and area normalisation, zero-padded centred frames); a test checks
the output against librosa.
"""
import torch
import torch.nn as nn
import torchaudio

from asr.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms window at 16 kHz
HOP_LENGTH = 160  # 10 ms hop: 100 frames per second
N_MELS = 80
LOG_FLOOR = 1e-6  # added before the log so that digital silence stays finite


def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Frames the filterbank yields for `num_samples` (centred frames: one per hop, plus one)."""
    return num_samples // HOP_LENGTH + 1


class LogMel(nn.Module):
    """(batch, samples) float waveforms -> (batch, frames, n_mels) log-mel energies."""

    def __init__(self, n_mels: int = N_MELS):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP_LENGTH,
            n_mels=n_mels, power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney",
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(audio.device.type, enabled=False):  # the FFT and log want fp32
            mel = self.mel(audio.float())  # (batch, n_mels, frames)
            return torch.log(mel + LOG_FLOOR).transpose(1, 2)


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_features(feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance, per-bin mean/variance normalisation over real frames only; padding is set to 0.

    Per-utterance statistics make the model indifferent to recording gain and channel, which
    matters more for users' own audio than the small gain from global corpus statistics.
    """
    mask = frame_mask(lengths, feats.shape[1]).unsqueeze(-1)  # (batch, frames, 1)
    count = lengths.clamp(min=1).to(feats.dtype)[:, None, None]
    mean = (feats * mask).sum(1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return ((feats - mean) / torch.sqrt(var + eps)) * mask


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
            keep &= ~self._band(batch, bins, torch.full((batch,), bins, device=feats.device),
                                torch.full((batch,), self.freq_width, device=feats.device)).unsqueeze(1)
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
