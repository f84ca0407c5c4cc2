"""The shared batching rules: packing by duration, padding, collate, usable utterances, speed perturbation."""

import json
import random

import numpy as np
import pytest
import torch

from asr.data.batching import collate, min_frames_for, perturb_speed, usable_rows
from asr.model import StackSubsampling
from asr.packing import pack_by_duration, pad
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


def test_batch_multiple_rounds_full_batches_down_and_carries_the_rest_forward():
    assert pack_by_duration([1.0] * 20, 10) == [list(range(10)), list(range(10, 20))]
    assert pack_by_duration([1.0] * 20, 10, multiple=8) == [list(range(8)), list(range(8, 16)), list(range(16, 20))]
    assert pack_by_duration([6.0, 7.0], 10, multiple=8) == [[0], [1]]  # fewer than 8 fit: kept whole
    # Two short utterances cut off a batch of 9, then a long one they cannot share a batch with.
    assert pack_by_duration([1.0] * 9 + [6.0], 10, multiple=8) == [list(range(8)), [8], [9]]


def test_batch_multiple_keeps_the_budget_the_order_and_every_utterance():
    rng = random.Random(2)
    for trial in range(200):
        durations, budget = random_durations(rng, trial), rng.choice([6, 8, 20, 60, 240])
        assert pack_by_duration(durations, budget, multiple=1) == pack_by_duration(durations, budget)
        for multiple in (2, 8):
            batches = pack_by_duration(durations, budget, multiple)
            # Utterances only move to the next batch: the ascending order is kept and each appears once.
            assert [i for b in batches for i in b] == np.argsort(durations, kind="stable").tolist()
            for b in batches:
                assert max(durations[i] for i in b) * len(b) <= budget or len(b) == 1
            assert all(len(b) % multiple == 0 or len(b) < multiple for b in batches[:-1])


def test_batch_multiple_reaches_the_manifest_sampler_and_the_shard_stream(tmp_path):
    from asr.config import DataConfig
    from asr.data.loader import DurationBatchSampler, SpeechDataModule
    from asr.data.shards import ShardStream
    from asr.errors import ASRError

    durations = [round(random.Random(i).uniform(0.5, 3.0), 3) for i in range(300)]
    expected = pack_by_duration(durations, 24, 8)
    assert any(len(b) % 8 for b in pack_by_duration(durations, 24)) and all(len(b) % 8 == 0 for b in expected[:-1])
    assert DurationBatchSampler(durations, 24, multiple=8).batches == expected
    data = SpeechDataModule(DataConfig(max_batch_seconds=24, batch_multiple=8, num_workers=0), None, None)
    rows = [{"duration": d} for d in durations]
    assert data._loader(rows, shuffle=False).batch_sampler.batches == expected
    with pytest.raises(ASRError, match="data.batch_multiple"):
        SpeechDataModule(DataConfig(batch_multiple=0), None, None)
    # The stream: its epoch length from the index's durations, and its buckets from the decoded audio.
    index = tmp_path / "shards.json"
    index.write_text(
        json.dumps(
            {
                "shards": [
                    {
                        "url": "shard-000000.tar",
                        "utterances": len(durations),
                        "seconds": sum(durations),
                        "durations": durations,
                    }
                ]
            }
        )
    )
    stream = ShardStream(index, None, None, 24, shuffle=False, batch_multiple=8)
    assert len(stream) == len(expected)
    items = [{"audio": np.zeros(int(d * 16000), np.float32)} for d in durations]
    bucketed = list(stream._bucket(items, random.Random(0)))
    assert [len(b) for b in bucketed] == [len(b) for b in expected]


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
