"""The input chain: waveform -> tapered, padded -> log-mel -> per-utterance normalisation, as nn.Modules.

It runs wherever the model runs (the GPU in training), on padded batches of raw waveforms, so the
data loader only decodes audio. Training augmentation plugs into it (asr.training.augment).
Parameters match librosa's defaults for a 25 ms / 10 ms mel filterbank (Slaney mel scale and area
normalisation, zero-padded centred frames); a test checks the output against librosa.
"""

import math

import torch
import torch.nn as nn
import torchaudio

from asr.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms window at 16 kHz
HOP_LENGTH = 160  # 10 ms hop: 100 frames per second


def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """Frames the filterbank yields for `num_samples` (centred frames: one per hop, plus one)."""
    return num_samples // HOP_LENGTH + 1


class LogMel(nn.Module):
    """(batch, samples) float waveforms -> (batch, frames, n_mels) log-mel energies.

    The floor added before the log is `dynamic_range_db` below each utterance's loudest bin, as in
    Whisper, so a quiet recording keeps the same features as a loud one (a gain only shifts every
    value by log(gain), which normalize_features removes). A fixed floor (1e-6) gated the quiet
    speakers: it hid 19% of the in-band mel bins of FSDD's held-out speaker (RMS -42 dBFS).
    """

    def __init__(self, n_mels: int, dynamic_range_db: float):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            win_length=N_FFT,
            hop_length=HOP_LENGTH,
            n_mels=n_mels,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )
        self.dynamic_range_db = dynamic_range_db

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(audio.device.type, enabled=False):  # the FFT and log want fp32
            mel = self.mel(audio.float())  # (batch, n_mels, frames)
            # Padding is silence, so it never raises an utterance's peak; digital silence stays finite.
            peak = mel.amax(dim=(1, 2), keepdim=True).clamp(min=1e-30)  # (batch, 1, 1)
            floor = peak * 10 ** (-self.dynamic_range_db / 10)
            return torch.log(mel + floor).transpose(1, 2)


def taper_edges(audio: torch.Tensor, audio_lens: torch.Tensor, samples: int) -> torch.Tensor:
    """(B, S) waveforms, (B,) sample counts -> each utterance's first and last `samples` faded in and
    out (raised cosine); padding stays zero.

    A recording cut mid-sound ends in a step to the zero padding, and the STFT spreads that step into
    a broadband click that looks like a fricative: FSDD's held-out speaker, whose clips are cut
    tightly, had EIGHT heard as SIX, SIGHT or EIGHTX. Fading the edges in training and inference
    alike removes the click; audio that starts and ends in silence is unchanged.
    """
    if samples <= 0:
        return audio

    def gain(t):  # (B, n) sample positions -> their fade: 1 away from the ends, 0 past the end
        edge = torch.minimum(t, audio_lens[:, None] - 1 - t)  # samples to the nearer end
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (edge.clamp(min=0) + 0.5) / samples)
        return (torch.where(edge >= samples, 1.0, ramp) * (edge >= 0)).to(audio.dtype)

    # Only the first and last `samples` of each row change: touch just those (this runs every step).
    out, n = audio.clone(), min(samples, audio.shape[1])
    head = torch.arange(n, device=audio.device)[None, :]  # (1, n): broadcast, so exported graphs take any batch
    out[:, :n] *= gain(head)
    if n < audio.shape[1]:  # the tail positions the head did not cover (short rows: none)
        tail = (audio_lens[:, None] - samples + torch.arange(samples, device=audio.device)).clamp(min=n)
        out.scatter_(1, tail, out.gather(1, tail) * gain(tail))
    return out


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalize_features(
    feats: torch.Tensor, lengths: torch.Tensor, per_bin: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    """Per-utterance mean/variance normalisation over real frames only; padding is set to 0.

    Per-utterance statistics make the model indifferent to recording gain and channel, which
    matters more for users' own audio than the small gain from global corpus statistics.
    per_bin=True (CMVN) normalises each mel bin on its own, which also removes the utterance's
    average spectrum: for a sentence that is mostly the voice and the channel. For a single short
    word it is mostly the word's vowel, so per_bin=False uses one mean and variance for all bins:
    the recording level goes, the spectral shape stays (FSDD, 3 seeds: 9.5% vs 10.6% WER; RESULTS.md).
    """
    mask = frame_mask(lengths, feats.shape[1]).unsqueeze(-1)  # (batch, frames, 1)
    dims = (1,) if per_bin else (1, 2)
    count = lengths.clamp(min=1).to(feats.dtype)[:, None, None] * (1 if per_bin else feats.shape[2])
    mean = (feats * mask).sum(dims, keepdim=True) / count  # (batch, 1, n_mels) or (batch, 1, 1)
    var = (((feats - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return ((feats - mean) / torch.sqrt(var + eps)) * mask


class Frontend(nn.Module):
    """(B, S) 16 kHz waveforms, (B,) sample counts -> (B, T, n_mels) normalised log-mel, (B,) frame counts.

    `pad_samples` of silence go before and after every utterance (features.edge_pad_ms, rounded by the
    model to whole output frames, whose logits it then drops). `augment` (training only) is called on
    the waveform, on the log-mel and on the normalised features: asr.training.augment.Augmentation.
    """

    def __init__(self, n_mels: int, dynamic_range_db: float, taper_ms: float, normalize: str, pad_samples: int = 0):
        super().__init__()
        if normalize not in ("per_bin", "per_utterance"):
            raise ValueError(f"normalize must be per_bin or per_utterance, got {normalize!r}")
        self.log_mel = LogMel(n_mels, dynamic_range_db)
        self.taper = int(taper_ms * SAMPLE_RATE / 1000)
        self.per_bin = normalize == "per_bin"
        self.pad_samples = pad_samples

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor, augment=None):
        if augment is not None:
            audio = augment.waveform(audio, audio_lens)
        audio = taper_edges(audio, audio_lens, self.taper)  # after any noise, which also starts abruptly
        if self.pad_samples:
            audio = nn.functional.pad(audio, (self.pad_samples, self.pad_samples))
            audio_lens = audio_lens + 2 * self.pad_samples
        lengths = num_frames(audio_lens)
        feats = self.log_mel(audio)
        if augment is not None:
            feats = augment.log_mel(feats)
        feats = normalize_features(feats, lengths, self.per_bin)
        if augment is not None:
            feats = augment.features(feats, lengths)
        return feats, lengths
