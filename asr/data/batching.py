"""Training batches: which utterances can be learnt from, how a batch becomes tensors, speed perturbation.

The manifest loader (`DurationBatchSampler`) and the shard stream (`ShardStream`) both go through here,
and pack and pad with asr.packing as transcription does, so the rules cannot drift apart.
"""

import numpy as np

from asr.audio import SAMPLE_RATE
from asr.packing import pad
from asr.text import normalize


def collate(items):
    """List of utterances ({id, audio (S_i,), ids, text} or None for a failed one, dropped) -> padded batch:
    audio (B, S) float32, audio_lens (B,), targets (B, L) int64 (0-padded), target_lens (B,), ids, texts."""
    import torch

    items = [it for it in items if it is not None]
    audio, audio_lens = map(torch.from_numpy, pad([it["audio"] for it in items]))
    targets, target_lens = map(torch.from_numpy, pad([it["ids"] for it in items], dtype=np.int64))
    return {
        "audio": audio,
        "audio_lens": audio_lens,
        "targets": targets,
        "target_lens": target_lens,
        "ids": [it["id"] for it in items],
        "texts": [it["text"] for it in items],
    }


def min_frames_for(ids: list[int]) -> int:
    """CTC needs one frame per token plus a blank between each pair of equal neighbours."""
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))


def usable_rows(rows, tokenizer, output_lengths, max_duration=None):
    """Keep utterances the model can learn from; return (rows, {reason: count}, first examples).

    Drops: characters outside the vocabulary, empty text, audio too long for the budget, and labels
    longer than the subsampled frames (CTC cannot align them; they would only add zero losses).
    """
    from asr.features import num_frames

    kept, skipped, examples = [], {}, {}

    def skip(reason, row, detail):
        skipped[reason] = skipped.get(reason, 0) + 1
        examples.setdefault(reason, f"{row['audio']}: {detail}")

    for row in rows:
        text = normalize(row["text"])
        unknown = tokenizer.unknown_chars(text)
        if not text:
            skip("empty transcript", row, "empty transcript")
        elif unknown:
            skip("characters outside the vocabulary", row, f"characters {''.join(sorted(unknown))!r} not in vocabulary")
        elif max_duration and row["duration"] > max_duration:
            skip(f"longer than {max_duration:g} s", row, f"{row['duration']:.1f} s")
        else:
            ids = tokenizer.encode(text)
            frames = int(
                output_lengths(num_frames(int(row["duration"] * SAMPLE_RATE)))
            )  # plain ints: no tensor per row
            if min_frames_for(ids) > frames:
                skip("label longer than the subsampled frames", row, f"{len(ids)} tokens for {frames} frames")
            else:
                kept.append({**row, "text": text, "ids": ids})
    return kept, skipped, examples


def perturb_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """(S,) float32 at 16 kHz -> (round(S / factor),) float32: `audio` played `factor` times faster
    (resampled from 16 kHz * factor to 16 kHz; tempo and pitch change together, Kaldi-style)."""
    import soxr

    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32, copy=False)
