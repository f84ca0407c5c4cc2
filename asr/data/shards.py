"""WebDataset-style tar shards: for corpora bigger than a local disk, or read over a network.

`write_shards` packs a manifest into DIR/shard-000000.tar, ... (each utterance: KEY.flac or KEY.wav,
the original audio bytes, and KEY.json with text, duration and speaker) plus DIR/shards.json, an
index of every shard's utterance count and seconds. `ShardStream` streams them back for training.

The index is what keeps DDP honest: every rank can compute, without reading any audio, how many
batches an epoch has, so all ranks run the same number of steps (a rank that runs out of its
shards early goes round them again for the last few batches) and Lightning knows the epoch length
for the LR schedule. URLs in the index may be local paths or anything webdataset opens
(`pipe:aws s3 cp s3://bucket/shard-000000.tar -`, http://...).
"""

import io
import json
import logging
import random
from pathlib import Path

import soundfile as sf
import torch

from asr.audio import SAMPLE_RATE, check_samples, to_mono_16k
from asr.data.batching import collate, perturb_speed
from asr.data.manifest import read_manifest
from asr.errors import ASRError, file_error
from asr.packing import pack_by_duration

log = logging.getLogger("asr")

INDEX = "shards.json"
BUFFER = 2000  # utterances gathered, sorted by duration and cut into batches at a time


def write_shards(manifest, out_dir, per_shard: int = 1000, log=print) -> Path:
    """Pack `manifest`'s utterances into tar shards of `per_shard` each; returns the index path."""
    import webdataset as wds

    rows = read_manifest(manifest)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(rows), per_shard):
        chunk = rows[start : start + per_shard]
        name = f"shard-{len(shards):06d}.tar"
        with wds.TarWriter(str(out_dir / name)) as sink:
            for row in chunk:
                path = Path(row["audio"])
                if not path.is_file():
                    raise file_error(path, "audio file not found (listed in the manifest)")
                ext = path.suffix.lower().lstrip(".") or "flac"
                meta = {k: row[k] for k in ("id", "text", "duration", "speaker") if k in row}
                sink.write({"__key__": row["id"].replace(".", "_"), ext: path.read_bytes(), "json": meta})
        shards.append(
            {
                "url": name,
                "utterances": len(chunk),
                "seconds": sum(r["duration"] for r in chunk),
                "durations": [round(r["duration"], 3) for r in chunk],
            }
        )
        log(f"{out_dir / name}: {len(chunk)} utterances")
    index = out_dir / INDEX
    index.write_text(json.dumps({"shards": shards}, indent=1) + "\n")
    return index


def read_index(path) -> list[dict]:
    """shards.json -> [{url, utterances, seconds}], with local URLs made absolute."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "shard index not found (write one with `asr prepare shards`)")
    try:
        shards = json.loads(path.read_text())["shards"]
    except (OSError, ValueError, KeyError) as e:
        raise file_error(path, f"not a shard index ({type(e).__name__})") from None
    for s in shards:
        if "://" not in s["url"] and not s["url"].startswith("pipe:"):
            s["url"] = str((path.parent / s["url"]).resolve())
    if not shards:
        raise file_error(path, "the shard index lists no shards")
    return shards


def is_shard_index(spec) -> bool:
    return isinstance(spec, str) and spec.endswith(INDEX)


class ShardStream(torch.utils.data.IterableDataset):
    """Streams batches (already collated by `collate`) from shards, duration-bucketed in buffers.

    Shards are shuffled per epoch (seeded) and dealt to ranks round-robin, then to loader workers.
    Every rank yields exactly `len(self)` batches per epoch.

    `speed_perturb=(lo, hi)` resamples each utterance by a factor drawn uniformly from [lo, hi], as
    SpeechDataset does for manifests; the draws come from the stream's per-epoch, per-worker generator,
    so an epoch (and a resumed one) hears the same factors. Buckets are packed on the perturbed lengths.
    `batch_multiple` rounds batches to a multiple of that many utterances, as `pack_by_duration` does.
    """

    def __init__(
        self,
        index,
        tokenizer,
        usable,
        max_batch_seconds: float,
        seed=0,
        rank=0,
        world=1,
        shuffle=True,
        speed_perturb=None,
        batch_multiple=1,
    ):
        self.shards, self.tokenizer, self.usable = read_index(index), tokenizer, usable
        self.max_batch_seconds, self.seed, self.rank, self.world, self.shuffle = (
            max_batch_seconds,
            seed,
            rank,
            world,
            shuffle,
        )
        self.speed_perturb, self.batch_multiple = speed_perturb, batch_multiple
        self.epoch = 0
        # The epoch length every rank uses: the most batches any rank's shards make in epoch 0, by
        # running the bucketing on the durations in the index. A rank with fewer goes round its shards
        # again for the rest; in later epochs (other shard orders) a rank may also stop a batch or two early.
        self.batches_per_rank = max(self._count_batches(r) for r in range(world))
        # (epoch, batches of it already trained) after a mid-epoch resume. Keyed by the epoch because
        # every epoch's loader workers get a copy of this object: only that epoch may skip.
        self.resume = (0, 0)

    def _count_batches(self, rank) -> int:
        by_url = {s["url"]: s for s in self.shards}
        durations = [d for url in self._rank_shards(rank, 0) for d in by_url[url]["durations"]]
        # One buffer at a time, as `_batches` fills them: the same rule `_bucket` applies to decoded audio.
        count = sum(
            len(pack_by_duration(durations[start : start + BUFFER], self.max_batch_seconds, self.batch_multiple))
            for start in range(0, len(durations), BUFFER)
        )
        return max(1, count)

    def __len__(self):
        return self.batches_per_rank

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _rank_shards(self, rank, epoch) -> list[str]:
        urls = [s["url"] for s in self.shards]
        if self.shuffle:
            random.Random(self.seed + epoch).shuffle(urls)
        return urls[rank :: self.world] or urls  # fewer shards than ranks: share them

    def my_shards(self) -> list[str]:
        mine = self._rank_shards(self.rank, self.epoch)
        info = torch.utils.data.get_worker_info()
        if info is not None:
            mine = mine[info.id :: info.num_workers] or mine
        return mine

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        quota = len(range(worker, self.batches_per_rank, workers))  # this worker's share of the epoch
        resume_epoch, resumed_batches = self.resume
        skip = len(range(worker, resumed_batches, workers)) if resume_epoch == self.epoch else 0
        made = 0
        rng = random.Random(self.seed * 1000 + self.epoch * 10 + worker)
        while made < quota:
            before = made
            for batch in self._batches(self.my_shards(), rng):
                if made >= quota:
                    return
                made += 1
                if made > skip:
                    yield collate(batch)
            if made == before:  # going round again would loop for ever
                raise ASRError(
                    f"{', '.join(self.my_shards())}: no usable utterance in these shards (every one "
                    f"failed to decode or was skipped; see the messages above)"
                )

    def _batches(self, urls, rng):
        buffer = []
        for item in self._utterances(urls, rng):
            buffer.append(item)
            if len(buffer) >= BUFFER:
                yield from self._bucket(buffer, rng)
                buffer = []
        if buffer:
            yield from self._bucket(buffer, rng)

    def _bucket(self, items, rng):
        packed = pack_by_duration(
            [len(it["audio"]) / SAMPLE_RATE for it in items], self.max_batch_seconds, self.batch_multiple
        )
        batches = [[items[i] for i in b] for b in packed]
        if self.shuffle:
            rng.shuffle(batches)
        yield from batches

    def _utterances(self, urls, rng):
        """Decoded, usable (and speed-perturbed) utterances from `urls`, audio (S,) float32 at 16 kHz;
        a bad one is logged and skipped."""
        import webdataset as wds

        for sample in wds.WebDataset(
            urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
        ):
            meta = json.loads(sample["json"])
            audio_key = next((k for k in sample if k not in ("json", "__key__", "__url__", "__local_path__")), None)
            source = f"{sample.get('__url__')}:{sample.get('__key__')}"
            try:
                audio, sr = sf.read(io.BytesIO(sample[audio_key]), dtype="float32")
                audio = check_samples(to_mono_16k(audio, sr), source)  # the checks load_audio makes
            except ASRError as e:  # names the source itself
                log.warning("skipping utterance: %s", e)
                continue
            except Exception as e:  # a decoder's own error: undecodable bytes, an unknown format
                log.warning("skipping utterance: %s: %s", source, e)
                continue
            row = self.usable(meta)
            if row is None:
                continue
            if self.speed_perturb:  # drawn only for kept utterances, after decoding: as SpeechDataset
                audio = perturb_speed(audio, rng.uniform(*self.speed_perturb))
            yield {
                "id": meta.get("id", sample["__key__"]),
                "audio": torch.from_numpy(audio),
                "ids": row["ids"],
                "text": row["text"],
            }
