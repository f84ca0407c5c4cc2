"""Dataset, duration-bucketing batch sampler and the LightningDataModule.

The rules they share with the shard stream (which utterances are usable, collation, speed perturbation)
live in asr/data/batching.py; packing by duration and padding, shared with transcription, in asr/packing.py.
"""

import logging
import math
import random

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from asr.audio import load_audio
from asr.config import DataConfig
from asr.data.batching import collate, perturb_speed, usable_rows
from asr.data.manifest import read_manifest
from asr.data.shards import ShardStream, is_shard_index
from asr.errors import ASRError
from asr.packing import pack_by_duration

log = logging.getLogger("asr")


class SpeechDataset(Dataset):
    """Rows (from `usable_rows`) -> dicts with the decoded waveform. A file that fails to decode
    returns None; `collate` drops it and the loss of one utterance is logged, not fatal.

    `speed_perturb=(lo, hi)` resamples each training utterance by a random factor in [lo, hi]
    (Kaldi-style speed perturbation): tempo and pitch change together, which mimics new speakers.
    `cache=True` keeps each decoded file in memory as 16-bit samples (115 MB per hour of audio), so
    later epochs skip decoding (FLAC: ~1.5 ms a file, 5-10% of a step of the CPU demo). Every epoch,
    the first included, hears the same 16-bit samples.
    """

    def __init__(self, rows, speed_perturb=None, cache=False):
        self.rows, self.speed_perturb = rows, speed_perturb
        self.cache = {} if cache else None  # row index -> int16 samples

    def __len__(self):
        return len(self.rows)

    def _load(self, i) -> np.ndarray:
        if self.cache is None:
            return load_audio(self.rows[i]["audio"])
        if i not in self.cache:
            audio = load_audio(self.rows[i]["audio"])
            self.cache[i] = np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype(np.int16)
        return self.cache[i].astype(np.float32) / 32768  # the first epoch too hears the cached samples

    def __getitem__(self, i):
        row = self.rows[i]
        try:
            audio = self._load(i)
        except ASRError as e:
            log.warning("skipping utterance: %s", e)
            return None
        if self.speed_perturb:
            audio = perturb_speed(audio, random.uniform(*self.speed_perturb))
        return {"id": row["id"], "audio": torch.from_numpy(audio), "ids": row["ids"], "text": row["text"]}


class DurationBatchSampler(torch.utils.data.Sampler):
    """Batches of similar duration, each holding at most `max_seconds` of padded audio.

    Utterances are sorted by duration and cut into batches once, so padding stays low and the
    number of steps per epoch is fixed (the LR schedule and resumption rely on that); `multiple` rounds
    them to a multiple of that many utterances (`pack_by_duration`). Each epoch
    shuffles the order of batches. With several processes (DDP), every rank takes a disjoint,
    equally long share of the batches, so all ranks run the same number of steps (`even=True`, for
    training: the few left-over batches wait for another epoch). Validation uses `even=False`: every
    batch is scored once, the last ranks taking one batch fewer (no gradients to keep in step).
    """

    def __init__(self, durations, max_seconds, shuffle=True, seed=0, num_replicas=1, rank=0, even=True, multiple=1):
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.batches = pack_by_duration(durations, max_seconds, multiple)
        if even and len(self.batches) < num_replicas:
            raise ASRError(
                f"config section 'data': {len(self.batches)} training batches cannot give each of "
                f"{num_replicas} processes one; lower max_batch_seconds or use fewer devices"
            )
        # Uneven (validation): the ranks short of a batch get an empty one, so that every rank runs the
        # same number of steps and joins the epoch-end reductions.
        self.per_rank = len(self.batches) // num_replicas if even else math.ceil(len(self.batches) / num_replicas)
        self.even = even
        self.resume_at = None  # (epoch, batches already trained in it): set when resuming mid-epoch
        self.sampler = self  # Lightning calls set_epoch on `batch_sampler.sampler` at each epoch start

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return self.per_rank

    def __iter__(self):
        batches = list(self.batches)
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(batches)
        end = self.per_rank * self.num_replicas if self.even else len(batches)
        mine = batches[self.rank : end : self.num_replicas]
        mine += [[]] * (self.per_rank - len(mine))  # uneven: an empty batch where this rank is one short
        if self.resume_at and self.resume_at[0] == self.epoch:
            mine = mine[self.resume_at[1] :]  # this epoch's first batches are already in the weights
            self.resume_at = None
        yield from mine


class ResumableLoader(DataLoader):
    """A DataLoader that tells Lightning it can resume mid-epoch. The position itself is restored by
    SpeechDataModule (from the global step), so there is no loader state to keep."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class SpeechDataModule(pl.LightningDataModule):
    """Owns the train/validation data: reads manifests, filters, batches by duration."""

    def __init__(self, data_cfg: DataConfig, tokenizer, output_lengths, seed: int = 0):
        super().__init__()
        self.cfg, self.tokenizer, self.output_lengths, self.seed = data_cfg, tokenizer, output_lengths, seed
        if data_cfg.cache_audio and data_cfg.num_workers:
            # Each loader process would fill a cache of its own: as many copies as workers.
            raise ASRError(
                "config section 'data': cache_audio keeps decoded audio in the training process; "
                "it needs num_workers: 0"
            )
        if data_cfg.batch_multiple < 1:
            raise ASRError(f"config key 'data.batch_multiple': expected 1 (off) or more, got {data_cfg.batch_multiple}")

    def _rows(self, key):
        paths = getattr(self.cfg, key)
        paths = paths if isinstance(paths, list) else [paths]
        rows = [row for p in paths for row in read_manifest(p)]
        kept, skipped, examples = usable_rows(rows, self.tokenizer, self.output_lengths, self.cfg.max_duration)
        if skipped:
            detail = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
            first = next(iter(examples.values()))
            log.warning(
                "%s: skipped %d of %d utterances (%s); first: %s", key, sum(skipped.values()), len(rows), detail, first
            )
        if not kept:
            raise ASRError(f"{', '.join(map(str, paths))}: no usable utterances ({detail})")
        hours = sum(r["duration"] for r in kept) / 3600
        log.info("%s: %d utterances, %.2f hours", key, len(kept), hours)
        return kept

    def setup(self, stage=None):
        if not hasattr(self, "val_rows"):
            self.streaming = is_shard_index(self.cfg.train)
            self.train_rows = None if self.streaming else self._rows("train")
            self.val_rows = self._rows("val")

    def _stream(self):
        """Training batches streamed from WebDataset shards (data.train: .../shards.json)."""
        world = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0

        def usable(meta):
            row = {**meta, "audio": f"{self.cfg.train}:{meta.get('id')}"}
            kept, _, _ = usable_rows([row], self.tokenizer, self.output_lengths, self.cfg.max_duration)
            return kept[0] if kept else None

        stream = ShardStream(
            self.cfg.train,
            self.tokenizer,
            usable,
            self.cfg.max_batch_seconds,
            seed=self.seed,
            rank=rank,
            world=world,
            speed_perturb=self.cfg.speed_perturb,
            batch_multiple=self.cfg.batch_multiple,
        )
        resume = self._resume_point(len(stream))
        if resume:
            stream.epoch, stream.resume = resume[0], resume
        workers = self.cfg.num_workers
        # Not persistent: each epoch's workers get a fresh copy of the stream with the new epoch number.
        return ResumableLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.seed + rank),
        )

    def _loader(self, rows, shuffle, speed_perturb=None):
        world = self.trainer.world_size if self.trainer else 1
        rank = self.trainer.global_rank if self.trainer else 0
        sampler = DurationBatchSampler(
            [r["duration"] for r in rows],
            self.cfg.max_batch_seconds,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            even=shuffle,
            multiple=self.cfg.batch_multiple,
        )
        workers = self.cfg.num_workers
        # Its own generator: every iter() of a DataLoader draws a worker seed, and from the global RNG
        # that draw would shift SpecAugment's and dropout's random streams after a resume.
        generator = torch.Generator().manual_seed(self.seed + rank)
        dataset = SpeechDataset(rows, speed_perturb, cache=self.cfg.cache_audio)
        return ResumableLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            generator=generator,
        )

    # Mid-epoch resumption. Every epoch has the same number of steps per rank (the sampler's fixed
    # batches), so the checkpoint's global step says exactly how many batches of its epoch are
    # already in the weights; the resumed sampler skips those and the epoch ends where it would have.
    def state_dict(self):
        trainer = self.trainer
        return (
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "accumulate": trainer.accumulate_grad_batches,
            }
            if trainer
            else {}
        )

    def load_state_dict(self, state):
        self._resume_state = state

    def _resume_point(self, steps_per_epoch: int):
        """(epoch, batches of it already trained) when resuming mid-epoch, else None; used once."""
        state, self._resume_state = getattr(self, "_resume_state", None), None
        if not state:
            return None
        # Lightning also steps on an epoch's last batch, so an epoch is ceil(batches / accumulate) steps.
        steps_before = state["epoch"] * math.ceil(steps_per_epoch / state["accumulate"])
        done = (state["global_step"] - steps_before) * state["accumulate"]
        if not 0 < done < steps_per_epoch:
            return None  # the checkpoint is from an epoch's end: start the next epoch as usual
        log.info("resuming epoch %d after its first %d batches", state["epoch"], done)
        return state["epoch"], done

    def train_dataloader(self):
        if self.streaming:
            return self._stream()
        loader = self._loader(self.train_rows, shuffle=True, speed_perturb=self.cfg.speed_perturb)
        loader.batch_sampler.resume_at = self._resume_point(len(loader.batch_sampler))
        return loader

    def val_dataloader(self):
        return self._loader(self.val_rows, shuffle=False)
