"""The acoustic model: time subsampling -> stacked bidirectional LSTM -> projection to tokens.

Padded batches are packed before the LSTM so that the backward direction starts at each
utterance's own last frame, never on padding: a padded batch gives the same outputs as each
utterance alone (tests/test_model.py checks it).
"""
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class StackSubsampling(nn.Module):
    """Concatenate `factor` consecutive frames: (B, T, F) -> (B, ceil(T/factor), F*factor). Cheap, exact."""

    def __init__(self, n_mels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.out_dim = n_mels * factor

    def forward(self, x, lengths):
        batch, frames, bins = x.shape
        pad = (-frames) % self.factor
        x = nn.functional.pad(x, (0, 0, 0, pad))  # zero frames, like the normalised padding
        x = x.reshape(batch, (frames + pad) // self.factor, bins * self.factor)
        return x, self.output_lengths(lengths)

    def output_lengths(self, frames):
        return (frames + self.factor - 1) // self.factor


class ConvSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions over (time, frequency): x4 in time, as in ESPnet/NeMo."""

    def __init__(self, n_mels: int, factor: int, channels: int = 32):
        super().__init__()
        if factor != 4:
            raise ValueError("conv subsampling supports factor 4")
        self.factor = factor
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.out_dim = channels * ((n_mels + 3) // 4)

    def forward(self, x, lengths):
        x = nn.functional.gelu(self.conv1(x.unsqueeze(1)))  # (B, C, T/2, F/2)
        half = self._halve(lengths)
        # Zero the frames past each utterance's end: GELU(bias) there is not zero and conv2 would read it.
        x = x * (torch.arange(x.shape[2], device=x.device)[None, :] < half[:, None])[:, None, :, None]
        x = nn.functional.gelu(self.conv2(x))  # (B, C, T/4, F/4)
        batch, channels, frames, bins = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, frames, channels * bins)
        return x, self._halve(half)

    @staticmethod
    def _halve(frames):
        return (frames - 1) // 2 + 1  # a kernel-3, stride-2, padding-1 convolution

    def output_lengths(self, frames):
        return self._halve(self._halve(frames))


class BiLSTMCTC(nn.Module):
    """(B, T, n_mels) normalised features -> (B, T', vocab) logits, with T' = T / subsample factor."""

    def __init__(self, vocab_size: int, n_mels: int = 80, subsample: str = "stack", subsample_factor: int = 4,
                 hidden: int = 320, layers: int = 3, dropout: float = 0.1):
        super().__init__()
        sub = {"stack": StackSubsampling, "conv": ConvSubsampling}[subsample]
        self.subsample = sub(n_mels, subsample_factor)
        self.lstm = nn.LSTM(self.subsample.out_dim, hidden, num_layers=layers, bidirectional=True,
                            batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * hidden, vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        x, lengths = self.subsample(feats, lengths)  # (B, T', D)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T', 2H)
        return self.proj(self.dropout(out)), lengths  # (B, T', vocab), (B,)
