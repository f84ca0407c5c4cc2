"""WebDataset shards: written from a manifest, streamed back with equal step counts per rank."""

import pytest

from asr.data.batching import usable_rows
from asr.data.manifest import read_manifest
from asr.data.shards import ShardStream, read_index, write_shards
from asr.text import CharTokenizer


@pytest.fixture(scope="module")
def shards(tiny_corpus, tmp_path_factory):
    return write_shards(tiny_corpus[1]["train"], tmp_path_factory.mktemp("shards"), per_shard=3, log=lambda _: None)


def stream(index, rank, world, epoch=0, **kwargs):
    tok = CharTokenizer()

    def usable(meta):
        kept, _, _ = usable_rows([{**meta, "audio": "x"}], tok, lambda f: (f + 3) // 4)
        return kept[0] if kept else None

    s = ShardStream(index, tok, usable, max_batch_seconds=6, seed=0, rank=rank, world=world, **kwargs)
    s.set_epoch(epoch)
    return s


def test_index_lists_every_utterance(shards, tiny_corpus):
    rows = read_manifest(tiny_corpus[1]["train"])
    index = read_index(shards)
    assert sum(s["utterances"] for s in index) == len(rows) and len(index) == 3
    assert sum(s["seconds"] for s in index) == pytest.approx(sum(r["duration"] for r in rows))


def test_ranks_stream_equal_step_counts_from_disjoint_shards(shards, tiny_corpus):
    texts = {r["id"]: r["text"] for r in read_manifest(tiny_corpus[1]["train"])}
    per_rank = [list(stream(shards, r, 2)) for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == len(stream(shards, 0, 2)) > 0
    for batches in per_rank:
        for b in batches:
            assert b["audio"].shape[0] == len(b["ids"]) and b["audio_lens"].max() == b["audio"].shape[1]
            assert all(texts[i] == t for i, t in zip(b["ids"], b["texts"]))
    whole = [list(stream(shards, 0, 1, epoch=e)) for e in (0, 1)]
    assert {i for b in whole[0] for i in b["ids"]} == set(texts)  # one rank, one epoch: everything
    assert [b["ids"] for b in whole[0]] != [b["ids"] for b in whole[1]]  # epochs reshuffle


@pytest.mark.slow
def test_training_streams_from_shards(shards, tiny_corpus, tmp_path, run_cli):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"out_dir: {tmp_path / 'run'}\n"
        f"data: {{train: {shards}, val: {tiny_corpus[1]['train']}, max_batch_seconds: 6, num_workers: 0}}\n"
        "model: {hidden: 32, layers: 1}\n"
        "trainer: {max_epochs: 2, enable_progress_bar: false, accelerator: cpu, log_every_n_steps: 1}\n"
    )
    code, out, err = run_cli("train", "--config", config)
    assert code == 0, err
    import torch

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * len(stream(shards, 0, 1))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_mid_epoch_resume_skips_batches_in_that_epoch_only(shards, workers):
    """Each epoch's loader workers get a copy of the stream: a skip left set in it would cut every later epoch."""
    from asr.data.loader import ResumableLoader

    s = stream(shards, 0, 1)
    s.epoch, s.resume = 0, (0, 2)  # as SpeechDataModule sets it when resuming 2 batches into epoch 0
    loader = ResumableLoader(s, batch_size=None, num_workers=workers)
    counts = []
    for epoch in range(3):
        s.set_epoch(epoch)  # the StreamEpoch callback
        counts.append(sum(1 for _ in loader))
    assert counts == [len(s) - 2, len(s), len(s)]


def test_shards_without_one_usable_utterance_fail_instead_of_looping_for_ever(tmp_path):
    import json

    import webdataset as wds

    from asr.errors import ASRError

    with wds.TarWriter(str(tmp_path / "shard-000000.tar")) as sink:
        for i in range(3):
            sink.write(
                {
                    "__key__": f"u{i}",
                    "flac": b"not audio" * 10,
                    "json": {"id": f"u{i}", "text": "HELLO", "duration": 1.0},
                }
            )
    index = tmp_path / "shards.json"
    index.write_text(
        json.dumps({"shards": [{"url": "shard-000000.tar", "utterances": 3, "seconds": 3.0, "durations": [1.0] * 3}]})
    )
    with pytest.raises(ASRError, match="shard-000000.tar: no usable utterance in these shards"):
        list(stream(str(index), 0, 1))


def lengths_by_id(batches) -> dict[str, list[int]]:
    """Audio lengths (samples) each utterance had in an epoch; one may come twice where a rank goes round again."""
    out = {}
    for b in batches:
        assert b["audio"].shape[1] == max(b["audio_lens"])
        for i, n in zip(b["ids"], b["audio_lens"].tolist()):
            out.setdefault(i, []).append(n)
    return out


def test_streaming_applies_speed_perturbation_as_the_manifest_loader_does(shards, tiny_corpus):
    from asr.audio import load_audio

    decoded = {r["id"]: len(load_audio(r["audio"])) for r in read_manifest(tiny_corpus[1]["train"])}
    plain = lengths_by_id(stream(shards, 0, 1))
    assert set(plain) == set(decoded) and all(set(n) == {decoded[i]} for i, n in plain.items())  # untouched

    fixed = lengths_by_id(stream(shards, 0, 1, speed_perturb=(1.25, 1.25)))  # 1.25x faster: 1/1.25 of the samples
    assert fixed and all(abs(n - decoded[i] / 1.25) <= 1 for i, ns in fixed.items() for n in ns)

    ranged = [lengths_by_id(stream(shards, 0, 1, epoch=e, speed_perturb=(0.9, 1.1))) for e in (0, 0, 1)]
    ratios = [decoded[i] / n for i, ns in ranged[0].items() for n in ns]
    assert all(0.9 - 1e-3 <= r <= 1.1 + 1e-3 for r in ratios)  # factor = original / perturbed length
    assert len({round(r, 3) for r in ratios}) > 1 and any(abs(r - 1) > 0.01 for r in ratios)  # drawn per utterance
    assert ranged[0] == ranged[1]  # the stream's own generator: an epoch (and its resumption) hears the same
    assert ranged[0] != ranged[2]  # and the next epoch draws anew


def test_bad_audio_in_a_shard_is_skipped_with_load_audio_messages(tmp_path, caplog):
    import io
    import json
    import logging

    import numpy as np
    import soundfile as sf
    import webdataset as wds

    def flac(samples):
        buf = io.BytesIO()
        sf.write(buf, samples, 16000, format="WAV", subtype="FLOAT")  # float WAV keeps NaN
        return buf.getvalue()

    good = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    nan = good.copy()
    nan[10] = np.nan
    with wds.TarWriter(str(tmp_path / "shard-000000.tar")) as sink:
        for key, audio in (("ok", good), ("nan", nan), ("short", good[:100])):
            sink.write({"__key__": key, "wav": flac(audio), "json": {"id": key, "text": "HI", "duration": 1.0}})
    index = tmp_path / "shards.json"
    index.write_text(
        json.dumps({"shards": [{"url": "shard-000000.tar", "utterances": 3, "seconds": 3.0, "durations": [1.0] * 3}]})
    )
    with caplog.at_level(logging.WARNING, logger="asr"):
        ids = {i for b in stream(str(index), 0, 1) for i in b["ids"]}
    assert ids == {"ok"}
    assert "shard-000000.tar:nan: audio contains NaN or infinite samples" in caplog.text
    assert "shard-000000.tar:short: audio is too short (100 samples at 16 kHz, need 400)" in caplog.text
