"""Which utterances can be learnt from, how they are grouped into batches, and how a batch is padded.

The one home of these rules: the manifest loader (`DurationBatchSampler`), the shard stream
(`ShardStream`) and transcription all batch and pad through here, so they cannot drift apart.

NumPy only at import (torch is imported inside the training helpers): transcription with an exported
model runs where PyTorch is not installed.
"""
import numpy as np

from asr.audio import SAMPLE_RATE
from asr.text import normalize


def pack_by_duration(durations, max_seconds: float, multiple: int = 1) -> list[list[int]]:
    """Durations (any unit: seconds, samples) -> batches of indices into `durations`.

    Indices are taken in ascending duration order (a stable sort: ties keep their input order) and cut
    into consecutive batches so that each batch's longest duration x its size <= `max_seconds` (same
    unit), i.e. at most that much padded audio. An utterance longer than the budget gets a batch of its
    own. Sorting first keeps padding low: a batch holds utterances of similar length.

    `multiple` > 1 rounds each full batch down to a multiple of that many utterances (cuDNN's fastest
    LSTM kernels want batch % 8 == 0); the utterances cut off open the next batch. Fewer utterances can
    only lower a batch's padded audio, so the budget still holds. Two kinds of batch stay as they are:
    the last one (the longest utterances; dropping or repeating them would change what an epoch trains
    on), and one that holds fewer than `multiple` utterances (long ones, of which fewer fit).
    """
    if multiple < 1:
        raise ValueError(f"batch multiple must be at least 1, got {multiple}")
    order = np.argsort(np.asarray(durations), kind="stable").tolist()
    batches, batch, longest = [], [], 0.0
    for i in order:
        # max() and not durations[i]: equal to it in ascending order, and keeps the rule exact for NaN.
        longest_if_added = max(longest, durations[i])
        while batch and longest_if_added * (len(batch) + 1) > max_seconds:
            keep = len(batch) - len(batch) % multiple or len(batch)
            batches.append(batch[:keep])
            batch = batch[keep:]  # fewer than `multiple` (none when multiple is 1): they open the next batch
            longest_if_added = max(durations[j] for j in batch + [i])
        batch.append(i)
        longest = longest_if_added
    if batch:
        batches.append(batch)
    return batches


def pad(waves, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """B 1-D sequences (arrays or lists) -> zero-padded (B, S) `dtype` array, S the longest, and their
    (B,) int64 lengths. An empty list gives a (0, 0) array."""
    lens = np.array([len(w) for w in waves], dtype=np.int64)
    out = np.zeros((len(waves), int(lens.max()) if len(waves) else 0), dtype=dtype)
    for i, w in enumerate(waves):
        out[i, : lens[i]] = w  # cast to `dtype` by the copy
    return out, lens


def collate(items):
    """List of utterances ({id, audio (S_i,), ids, text} or None for a failed one, dropped) -> padded batch:
    audio (B, S) float32, audio_lens (B,), targets (B, L) int64 (0-padded), target_lens (B,), ids, texts."""
    import torch

    items = [it for it in items if it is not None]
    audio, audio_lens = map(torch.from_numpy, pad([it["audio"] for it in items]))
    targets, target_lens = map(torch.from_numpy, pad([it["ids"] for it in items], dtype=np.int64))
    return {"audio": audio, "audio_lens": audio_lens, "targets": targets, "target_lens": target_lens,
            "ids": [it["id"] for it in items], "texts": [it["text"] for it in items]}


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
            frames = int(output_lengths(num_frames(int(row["duration"] * SAMPLE_RATE))))  # plain ints: no tensor per row
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
