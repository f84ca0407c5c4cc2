"""The shared batching rules: packing by duration, padding, collate, usable utterances, speed perturbation."""
import random

import numpy as np
import torch

from asr.data.batching import collate, min_frames_for, pack_by_duration, pad, perturb_speed, usable_rows
from asr.model import StackSubsampling
from asr.text import CharTokenizer


def reference_rule_with_running_max(durations, max_seconds):
    """The packing rule written out on its own, as a reference: pack_by_duration must give exactly these batches."""
    order = np.argsort(np.asarray(durations), kind="stable")
    batches, batch, longest = [], [], 0.0
    for i in order.tolist():
        longest_if_added = max(longest, durations[i])
        if batch and longest_if_added * (len(batch) + 1) > max_seconds:
            batches.append(batch)
            batch, longest_if_added = [], durations[i]
        batch.append(i)
        longest = longest_if_added
    if batch:
        batches.append(batch)
    return batches


def reference_rule_on_sorted(sorted_durations, max_seconds):
    """The same rule on durations already sorted (positions), as a stream's buffer applies it."""
    batches, batch = [], []
    for i, d in enumerate(sorted_durations):
        if batch and d * (len(batch) + 1) > max_seconds:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


def transcribe_rule(lengths, max_samples):
    """The same rule counted in samples with an end marker, as batched transcription applies it."""
    out, batch = [], []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]) + [None]:
        full = i is None or (batch and lengths[i] * (len(batch) + 1) > max_samples)
        if full and batch:
            out.append(batch)
            batch = []
        if i is not None:
            batch.append(i)
    return out


def random_durations(rng, trial):
    n = rng.randint(1, 200)
    kind = trial % 4
    if kind == 0:
        return [rng.uniform(0.1, 35) for _ in range(n)]
    if kind == 1:
        return [float(rng.randint(1, 8)) for _ in range(n)]  # many ties: the stable sort matters
    if kind == 2:
        return [round(rng.gammavariate(4, 3), 2) for _ in range(n)]
    return list(np.random.default_rng(trial).uniform(0.5, 20, n))  # numpy floats


def test_pack_by_duration_gives_the_batches_of_every_former_copy_of_the_rule():
    rng = random.Random(0)
    for trial in range(400):
        durations, budget = random_durations(rng, trial), rng.choice([0.5, 1, 6, 8, 20, 60, 240])
        batches = pack_by_duration(durations, budget)
        assert batches == reference_rule_with_running_max(durations, budget)
        ordered = sorted(durations)
        assert pack_by_duration(ordered, budget) == reference_rule_on_sorted(ordered, budget)
        samples = [int(d * 16000) for d in durations]
        assert pack_by_duration(samples, budget * 16000) == transcribe_rule(samples, budget * 16000)


def test_pack_by_duration_keeps_the_budget_and_covers_everything_once():
    durations = [3.0, 1.0, 2.0, 1.0, 9.0, 2.5]
    assert pack_by_duration(durations, 6) == [[1, 3, 2], [5, 0], [4]]  # ties in input order; 9 s alone
    rng = random.Random(1)
    for trial in range(50):
        durations = random_durations(rng, trial)
        batches = pack_by_duration(durations, 20)
        assert sorted(i for b in batches for i in b) == list(range(len(durations)))
        for b in batches:
            assert max(durations[i] for i in b) * len(b) <= 20 or len(b) == 1
    assert pack_by_duration([], 10) == []


def test_pad_zero_pads_arrays_and_tensors_to_the_longest():
    audio, lens = pad([np.ones(5, np.float32), torch.full((3,), 2.0), np.arange(4, dtype=np.float32)])
    assert audio.shape == (3, 5) and audio.dtype == np.float32
    assert lens.tolist() == [5, 3, 4] and lens.dtype == np.int64
    assert audio[1].tolist() == [2, 2, 2, 0, 0] and audio[2].tolist() == [0, 1, 2, 3, 0]
    ids, n = pad([[4, 5], []], dtype=np.int64)
    assert ids.dtype == np.int64 and ids.tolist() == [[4, 5], [0, 0]] and n.tolist() == [2, 0]
    empty, none = pad([])
    assert empty.shape == (0, 0) and none.tolist() == []


def test_collate_pads_and_drops_failed_items():
    items = [
        {"id": "a", "audio": torch.ones(100), "ids": [1, 2], "text": "X"},
        None,
        {"id": "b", "audio": torch.ones(40), "ids": [3], "text": "Y"},
    ]
    batch = collate(items)
    assert batch["audio"].shape == (2, 100) and batch["audio"][1, 40:].abs().sum() == 0
    assert batch["audio_lens"].tolist() == [100, 40]
    assert batch["targets"].tolist() == [[1, 2], [3, 0]] and batch["target_lens"].tolist() == [2, 1]
    assert batch["targets"].dtype == torch.long and batch["audio"].dtype == torch.float32
    assert batch["ids"] == ["a", "b"] and batch["texts"] == ["X", "Y"]
    empty = collate([None])
    assert empty["audio"].shape == (0, 0) and empty["targets"].shape == (0, 0) and empty["ids"] == []


def test_usable_rows_skips_and_counts_each_problem():
    tok = CharTokenizer()
    sub = StackSubsampling(80, 4)
    rows = [
        {"id": "ok", "audio": "a.flac", "duration": 2.0, "text": "hello world"},
        {"id": "digits", "audio": "b.flac", "duration": 2.0, "text": "route 66"},
        {"id": "empty", "audio": "c.flac", "duration": 2.0, "text": "  "},
        {"id": "too-long-label", "audio": "d.flac", "duration": 0.2, "text": "a very long sentence for a blip"},
        {"id": "too-long-audio", "audio": "e.flac", "duration": 99.0, "text": "fine"},
    ]
    kept, skipped, examples = usable_rows(rows, tok, sub.output_lengths, max_duration=30)
    assert [r["id"] for r in kept] == ["ok"]
    assert kept[0]["text"] == "HELLO WORLD" and kept[0]["ids"] == tok.encode("HELLO WORLD")
    assert sum(skipped.values()) == 4 and len(skipped) == 4
    assert "b.flac" in examples["characters outside the vocabulary"]


def test_min_frames_counts_blanks_between_repeats():
    assert min_frames_for([1, 2, 3]) == 3
    assert min_frames_for([5, 5, 5]) == 5


def test_perturb_speed_changes_length_by_the_factor():
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    for factor in (0.9, 1.0, 1.1):
        out = perturb_speed(audio, factor)
        assert out.dtype == np.float32 and abs(len(out) - 16000 / factor) <= 1
