"""The model: the input chain (asr.features.Frontend) -> time subsampling -> stacked bidirectional
LSTM -> projection to tokens. `ASRModel` is all of it, the one module inference runs and training wraps.

The backward direction must start at each utterance's own last frame, never on padding. Rather
than packing (slow on CPU, where it bypasses oneDNN's fused LSTM), each layer runs two one-way
LSTMs on the padded batch: the forward one reads the batch as is (padding comes after the real
frames, so it cannot affect them), the backward one reads each utterance reversed within its own
length, so its padding also comes last. A padded batch therefore gives exactly the outputs of each
utterance alone (tests/test_model.py checks it), at padded-LSTM speed.
"""

import math

import torch
import torch.nn as nn

from asr.audio import SAMPLE_RATE
from asr.dims import ModelDims
from asr.features import HOP_LENGTH, Frontend

__all__ = ["ASRModel", "BiLSTMCTC", "ModelDims"]


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


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, D): reverse each row's first `length` frames and leave its padding in place."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (B, T); its own inverse
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLSTMLayer(nn.Module):
    """One bidirectional layer on a padded batch: (B, T, D), (B,) -> (B, T, 2H), or (B, T, H) when the
    two directions are summed (`merge="sum"`, as DeepSpeech 2 and deepspeech.pytorch do)."""

    def __init__(self, input_size: int, hidden: int, merge: str = "concat"):
        super().__init__()
        if merge not in ("concat", "sum"):
            raise ValueError(f"merge must be concat or sum, got {merge!r}")
        self.merge = merge
        self.fwd = nn.LSTM(input_size, hidden, batch_first=True)
        self.bwd = nn.LSTM(input_size, hidden, batch_first=True)

    def forward(self, x, lengths):
        forward, _ = self.fwd(x)
        backward, _ = self.bwd(reverse_within_length(x, lengths))
        backward = reverse_within_length(backward, lengths)
        return torch.cat([forward, backward], dim=-1) if self.merge == "concat" else forward + backward


class BiLSTMCTC(nn.Module):
    """(B, T, n_mels) normalised features -> (B, T', vocab) logits, with T' = T / subsample factor."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        subsamplers = {"stack": StackSubsampling, "conv": ConvSubsampling}
        if dims.subsample not in subsamplers:
            raise ValueError(f"subsample must be stack or conv, got {dims.subsample!r}")
        self.subsample = subsamplers[dims.subsample](dims.n_mels, dims.subsample_factor)
        width = 2 * dims.hidden if dims.merge == "concat" else dims.hidden  # each layer's output size
        sizes = [self.subsample.out_dim] + [width] * (dims.layers - 1)
        self.lstm = nn.ModuleList(BiLSTMLayer(size, dims.hidden, dims.merge) for size in sizes)
        self.dropout = nn.Dropout(dims.dropout)
        self.proj = nn.Linear(width, dims.vocab_size)
        layer, chars = dims.char_ctc_layer, dims.char_vocab_size
        if not 0 <= layer <= dims.layers or (layer and chars < 2):
            raise ValueError(
                f"char_ctc_layer must be 0 (off) or 1..{dims.layers} with a character vocabulary, got {layer}"
            )
        # Hierarchical CTC (Sanabria & Metze 2018): a character head on an inner layer, trained only. It
        # teaches the lower layers letters early, so the top layer's large subword units learn fast.
        self.char_ctc_layer = layer
        self.char_proj = nn.Linear(width, chars) if layer else None

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, with_char_logits: bool = False):
        """-> logits (B, T', vocab), lengths (B,); and char logits (B, T', chars) if asked for."""
        x, lengths = self.subsample(feats, lengths)  # (B, T', D)
        char_logits = None
        for i, layer in enumerate(self.lstm, 1):
            x = layer(self.dropout(x) if i > 1 else x, lengths)  # (B, T', 2H); dropout between layers
            if with_char_logits and i == self.char_ctc_layer:
                char_logits = self.char_proj(self.dropout(x))
        logits = self.proj(self.dropout(x))
        return (logits, lengths, char_logits) if with_char_logits else (logits, lengths)


class ASRModel(nn.Module):
    """(B, S) 16 kHz waveforms, (B,) sample counts -> (B, T', vocab) logits, (B,) frame counts.

    Frontend then BiLSTMCTC, built from `dims` (asr.dims.ModelDims) alone, which every checkpoint carries
    beside the weights (asr.checkpoint).
    """

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.network = BiLSTMCTC(dims)
        self.frame_samples = HOP_LENGTH * dims.subsample_factor  # audio per output frame
        # Edge padding in whole output frames, so that exactly its frames can be dropped from the logits.
        self.pad_frames = math.ceil(dims.edge_pad_ms * SAMPLE_RATE / 1000 / self.frame_samples)
        self.frontend = Frontend(
            dims.n_mels,
            dims.dynamic_range_db,
            dims.taper_ms,
            dims.normalize,
            pad_samples=self.pad_frames * self.frame_samples,
        )

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor, augment=None, with_char_logits: bool = False):
        """-> logits, lengths; and the character head's (B, T', chars) logits if asked for (training).
        `augment`: training augmentation, called by the frontend (asr.training.augment)."""
        feats, lengths = self.frontend(audio, audio_lens, augment)
        if with_char_logits:
            logits, out_lens, char_logits = self.network(feats, lengths, with_char_logits=True)
        else:  # inference: the character head is never decoded, so it is not run
            (logits, out_lens), char_logits = self.network(feats, lengths), None
        if self.pad_frames:  # the network heard the silence; CTC, decoding and word times see real frames only
            cut = slice(self.pad_frames, -self.pad_frames)
            logits, out_lens = logits[:, cut], out_lens - 2 * self.pad_frames
            char_logits = char_logits[:, cut] if char_logits is not None else None
        return (logits, out_lens, char_logits) if with_char_logits else (logits, out_lens)

    @property
    def vocab_size(self) -> int:
        return self.network.proj.out_features

    def training_flops(self, frames: int, with_char_head: bool = False) -> float:
        """FLOPs of one training step (forward + backward, taken as 3x forward) over `frames` real output
        frames: per frame, layer and direction 2 * 4H(D_in + H) for the LSTM, and 2 * D * V for each output
        projection. The front end and padding are not counted: this is the useful work, for TFLOP/s figures."""
        net, per_frame = self.network, 0
        for layer in net.lstm:
            for lstm in (layer.fwd, layer.bwd):
                per_frame += 2 * 4 * lstm.hidden_size * (lstm.input_size + lstm.hidden_size)
        for head in (net.proj, net.char_proj if with_char_head else None):
            per_frame += 2 * head.in_features * head.out_features if head is not None else 0
        return 3.0 * per_frame * frames
