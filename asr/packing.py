"""How utterances are grouped into batches and padded: the one home of these rules, for training (the
manifest loader, the shard stream) and transcription alike. NumPy only: transcription with an exported
model runs where PyTorch is not installed."""

import numpy as np


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
