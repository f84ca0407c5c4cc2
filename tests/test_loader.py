import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import bare_trainer

import asr.data.loader as loader
from asr.config import DataConfig
from asr.data.loader import DurationBatchSampler, SpeechDataModule
from asr.errors import ASRError
from asr.model import StackSubsampling
from asr.text import CharTokenizer


def test_batches_respect_budget_and_cover_everything_once():
    durations = [((i * 7919) % 200) / 10 + 0.5 for i in range(500)]
    sampler = DurationBatchSampler(durations, max_seconds=60, shuffle=True, seed=1)
    batches = list(sampler)
    seen = sorted(i for b in batches for i in b)
    assert seen == list(range(500))
    for b in batches:
        assert max(durations[i] for i in b) * len(b) <= 60 or len(b) == 1
    # low padding: within a batch, durations are close
    padded = sum(max(durations[i] for i in b) * len(b) for b in batches)
    assert sum(durations) / padded > 0.9
    assert len(batches) == len(sampler)


def test_epochs_shuffle_batch_order_deterministically():
    durations = [float(i % 37 + 1) for i in range(300)]
    a = DurationBatchSampler(durations, 40, seed=3)
    b = DurationBatchSampler(durations, 40, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.sampler.set_epoch(1)  # what Lightning calls at each epoch start
    assert list(a) != first and sorted(map(tuple, list(a))) == sorted(map(tuple, first))


def test_lightning_tells_the_batch_sampler_each_epoch(tmp_path):
    """DurationBatchSampler exposes itself as `sampler` because Lightning (2.6) calls set_epoch on a loader's
    `sampler` and `batch_sampler.sampler` only: this fails on a release that stops, and shuffling would freeze."""
    import pytorch_lightning as pl

    sampler = DurationBatchSampler([1.0] * 6, 2.0, seed=0)
    seen = []

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            seen.append((self.current_epoch, sampler.epoch))
            return (self.w - 1).pow(2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(list(range(6)), batch_sampler=sampler)

    bare_trainer(tmp_path, max_epochs=3).fit(Probe())
    assert seen and all(epoch == sampler_epoch for epoch, sampler_epoch in seen) and seen[-1][0] == 2


def test_ranks_get_disjoint_batches_and_equal_step_counts():
    durations = [float(i % 23 + 1) for i in range(403)]
    ranks = [DurationBatchSampler(durations, 50, seed=0, num_replicas=3, rank=r) for r in range(3)]
    for r in ranks:
        r.set_epoch(5)
    shares = [list(r) for r in ranks]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(ranks[0])
    ids = [i for s in shares for b in s for i in b]
    assert len(ids) == len(set(ids))


def test_validation_ranks_cover_every_batch_once():
    durations = [float(i % 23 + 1) for i in range(403)]
    ranks = [DurationBatchSampler(durations, 50, shuffle=False, num_replicas=4, rank=r, even=False) for r in range(4)]
    assert len(ranks[0].batches) % 4 != 0  # the case where an even split would drop batches
    ids = sorted(i for r in ranks for b in r for i in b)
    assert ids == list(range(403))
    # Every rank runs as many validation steps (one may be empty), or the epoch-end reductions would hang.
    assert [len(list(r)) for r in ranks] == [len(r) for r in ranks] == [len(ranks[0])] * 4
    assert sum(b == [] for r in ranks for b in r) == -len(ranks[0].batches) % 4


def test_fewer_training_batches_than_processes_is_a_clear_error():
    assert len(DurationBatchSampler([1.0, 1.0], 8, num_replicas=1, rank=0)) == 1
    with pytest.raises(ASRError, match="1 training batches cannot give each of 2 processes one"):
        DurationBatchSampler([1.0, 1.0], 8, num_replicas=2, rank=0)
    assert [len(list(DurationBatchSampler([1.0, 1.0], 8, num_replicas=2, rank=r, even=False))) for r in (0, 1)] == [
        1,
        1,
    ]


def test_audio_cache_decodes_each_file_once_and_returns_the_same_samples(tmp_path, monkeypatch):
    """data.cache_audio: later epochs read memory, not the file; 16-bit audio comes back bit-exact."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        path = tmp_path / f"u{i}.flac"
        sf.write(path, (rng.standard_normal(8000) * 0.2).clip(-1, 0.99), 16000, subtype="PCM_16")
        rows.append({"id": f"u{i}", "audio": str(path), "ids": [1, 2], "text": "A B"})
    decoded = []
    monkeypatch.setattr(loader, "load_audio", lambda p: decoded.append(p) or sf.read(p, dtype="float32")[0])
    plain, cached = loader.SpeechDataset(rows), loader.SpeechDataset(rows, cache=True)
    for _ in range(3):  # epochs
        for i in range(3):
            assert torch.equal(cached[i]["audio"], plain[i]["audio"])
    assert len(decoded) == 3 * 3 + 3  # the plain dataset decodes every time, the cached one once per file
    assert sum(v.nbytes for v in cached.cache.values()) == 3 * 8000 * 2  # 16-bit in memory


def test_audio_cache_refuses_loader_workers():
    with pytest.raises(ASRError, match="cache_audio.*num_workers: 0"):
        SpeechDataModule(
            DataConfig(train="t.jsonl", val="v.jsonl", cache_audio=True, num_workers=2),
            CharTokenizer(),
            StackSubsampling(80, 4).output_lengths,
        )
    SpeechDataModule(
        DataConfig(train="t.jsonl", val="v.jsonl", cache_audio=True, num_workers=0),
        CharTokenizer(),
        StackSubsampling(80, 4).output_lengths,
    )  # in the training process: fine
