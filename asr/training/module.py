"""The LightningModule: wraps the inference model (asr.model.ASRModel) and adds what only training needs:
augmentation, the CTC losses (with the character head of hierarchical CTC), the optimiser and its
schedule, the NaN guard, and validation WER."""

import math
import random

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from asr.checkpoint import FORMAT_VERSION
from asr.config import NOT_CONFIG_KEYS, Config, dims_section
from asr.decoding import greedy_decode
from asr.errors import ASRError
from asr.metrics import error_counts
from asr.model import ASRModel, ModelDims
from asr.text import BLANK, CharTokenizer, normalize
from asr.training.augment import Augmentation

# The character head of hierarchical CTC (model.char_ctc_layer): letters, space, apostrophe and digits,
# whatever the main tokenizer is. Fixed, because its size is part of the weights.
CHAR_CTC_CHARS = CharTokenizer.DEFAULT_CHARS + "0123456789"
MAX_SKIPPED_IN_A_ROW = 50  # fp16 loss scaling alone can skip a handful in a row while it settles
STOP_CHECK_EVERY = 10  # optimizer steps between host reads of the skip count (the guard's only sync)


def model_dims(config: Config, vocab_size: int) -> ModelDims:
    """The run config -> the model's description: each ModelDims field from the features or model section
    that names it, the vocabulary from the tokenizer, the character head's from CHAR_CTC_CHARS."""
    values = {
        name: getattr(getattr(config, dims_section(name)), name)
        for name in ModelDims.field_names()
        if name not in NOT_CONFIG_KEYS
    }
    chars = CharTokenizer(CHAR_CTC_CHARS).vocab_size if config.model.char_ctc_layer else 0
    return ModelDims(vocab_size=vocab_size, char_vocab_size=chars, **values)


class CTCModule(pl.LightningModule):
    """`config` is the whole run config; it is saved into every checkpoint beside the model's arguments
    and the tokenizer, so a checkpoint alone rebuilds the model (asr.checkpoint) or resumes the run."""

    def __init__(self, config: Config, tokenizer):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        if config.optim.decay not in WarmupDecay.SHAPES:
            raise ASRError(f"config key 'optim.decay': expected cosine or linear, got {config.optim.decay!r}")
        try:
            self.model = ASRModel(model_dims(config, tokenizer.vocab_size))
            self.augment = Augmentation(config.features, config.seed)  # identity in eval mode
        except (TypeError, ValueError, KeyError) as e:
            raise ASRError(f"config section 'model'/'features': {e}") from None
        self.char_tokenizer = CharTokenizer(CHAR_CTC_CHARS)
        self._val_sums = torch.zeros(4)  # word errors, words, char errors, chars
        self.skipped_steps = 0  # optimizer steps skipped for a non-finite loss or gradient, in all
        self._backward_ran = True  # False after a training_step that returned no loss
        self._hook_calls = 0  # on_before_optimizer_step calls: when to read the skip count
        self._epoch_batches = torch.zeros(2)  # training batches this epoch: run, and with readable audio

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor, with_char_logits: bool = False):
        """(B, S) waveforms, (B,) sample counts -> the model's logits (augmented while training)."""
        return self.model(
            audio, audio_lens, augment=self.augment if self.training else None, with_char_logits=with_char_logits
        )

    def ctc_loss(self, logits, out_lens, targets, target_lens):
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T', B, V), fp32 for CTC
        return F.ctc_loss(log_probs, targets, out_lens, target_lens, blank=BLANK, reduction="mean", zero_infinity=True)

    def on_train_epoch_start(self):
        self._epoch_batches = torch.zeros(2, device=self.device)

    def training_step(self, batch, batch_idx):
        self._epoch_batches[0] += 1
        self._backward_ran = True
        if not batch["ids"]:  # every file in this batch failed to decode (already logged): skip the step
            if self.trainer.world_size == 1:
                self._backward_ran = False
                return None
            # Under DDP every rank must join the gradient all-reduce: a zero loss that touches every weight.
            return sum(p.sum() for p in self.parameters()) * 0.0
        self._epoch_batches[1] += 1
        logits, out_lens, char_logits = self(batch["audio"], batch["audio_lens"], with_char_logits=True)
        loss = self.ctc_loss(logits, out_lens, batch["targets"], batch["target_lens"])
        weight = self.config.model.char_ctc_weight
        if weight and char_logits is not None:
            char_loss = self.ctc_loss(char_logits, out_lens, *self.char_targets(batch["texts"]))
            self.log("train_char_loss", char_loss, batch_size=len(batch["ids"]))
            loss = (1 - weight) * loss + weight * char_loss
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def char_targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised texts -> the character head's padded targets (B, L) and lengths (B,). Characters
        it lacks are left out: the head is a training aid, never decoded."""
        chars = self.char_tokenizer.chars
        ids = [
            torch.tensor(self.char_tokenizer.encode("".join(c for c in text if c in chars)), dtype=torch.long)
            for text in texts
        ]
        lens = torch.tensor([len(row) for row in ids], dtype=torch.long)
        targets = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)  # (B, L), zero-padded
        # Not blocking: a blocking copy to the GPU waits for the forward pass queued before it.
        return targets.to(self.device, non_blocking=True), lens.to(self.device, non_blocking=True)

    def on_before_optimizer_step(self, optimizer):
        """Clip the gradient norm to trainer.gradient_clip_val, and skip a step whose gradients hold
        NaN/inf, count it, and stop the run with the likely causes if it keeps happening, rather than
        writing NaN weights. All of it on the device, from one norm pass: the host reads the skip count
        once every STOP_CHECK_EVERY steps, never the norm. A fused optimizer (configure_optimizers) skips
        its own step, on the device, when `optimizer.found_inf` is 1: the flag GradScaler hands it under
        16-mixed. Any other optimizer is skipped from the host, at the price of one sync per step."""
        params = [p for p in self.parameters() if p.grad is not None]
        scaler = self.loss_scaler()
        if not params or (scaler is not None and not self._backward_ran):  # Lightning runs no step then
            return
        # A fused torch optimizer reads `found_inf` and skips its step on the device (tests/test_optimizer.py pins it)
        takes_found_inf = all(group.get("fused") for group in optimizer.param_groups)
        if scaler is not None and takes_found_inf:
            # Lightning leaves the unscaling to a fused optimizer's own step (MixedPrecision.optimizer_step),
            # after this hook: clipping must see true gradients, so unscale here (tests/test_optimizer.py pins
            # it). scaler.step then hands the step no scale, only found_inf.
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        non_finite = (~torch.isfinite(norm)).float()  # () 1.0 or 0.0
        clip = self.config.trainer.get("gradient_clip_val")
        if clip:  # scales by min(1, clip / norm) on the device: below the limit the gradients stay as they are
            torch.nn.utils.clip_grads_with_norm_(params, clip, norm, foreach=True)
        self._count_skip(non_finite)
        if takes_found_inf:  # under a loss scaler scaler.step replaces it with its own, from the same gradients
            optimizer.found_inf = non_finite
        elif non_finite.item():
            for p in self.parameters():
                p.grad = None  # AdamW leaves weights without gradients alone

    def loss_scaler(self):
        """The GradScaler of Lightning's 16-mixed precision plugin, or None: other precisions, or a module
        driven without a Trainer (benchmarks, tests)."""
        try:
            plugin = self.trainer.precision_plugin
        except RuntimeError:  # not attached to a Trainer
            return None
        return getattr(plugin, "scaler", None)

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps skipped for a non-finite loss or gradient, in all (reads the device)."""
        return int(self._skips[0])

    @skipped_steps.setter
    def skipped_steps(self, count: int):
        # (3,): in all, in a row now, and the longest run in a row since the host last looked
        self._skips = torch.tensor([float(count), 0.0, 0.0])

    def _count_skip(self, non_finite: torch.Tensor):
        """Add this step's () 0/1 flag to the device's skip counts; every STOP_CHECK_EVERY steps, stop
        the run if MAX_SKIPPED_IN_A_ROW or more steps in a row were skipped at any point since the last
        look (a run of skips that ended between two looks counts too)."""
        total, in_a_row, longest = self._skips.to(non_finite.device).unbind()
        in_a_row = (in_a_row + non_finite) * non_finite
        self._skips = torch.stack([total + non_finite, in_a_row, torch.maximum(longest, in_a_row)])
        self.log("skipped_steps", self._skips[0])
        self._hook_calls += 1
        if self._hook_calls % STOP_CHECK_EVERY:
            return
        in_a_row = int(self._skips[2])  # the guard's one host read, every STOP_CHECK_EVERY steps
        self._skips[2] = self._skips[1]
        if in_a_row < MAX_SKIPPED_IN_A_ROW:
            return
        raise ASRError(
            f"training stopped at step {self.global_step}: {in_a_row} steps in a row had a non-finite "
            f"loss or gradient ({self.skipped_steps} in all). Likely causes: a learning rate too high "
            f"(optim.lr={self.config.optim.lr}), labels longer than the subsampled frames, or audio with "
            f"NaN/inf samples. The last good weights are in checkpoints/last.ckpt"
        )

    def on_save_checkpoint(self, checkpoint):
        # Plain data only, so checkpoints load with torch.load(weights_only=True).
        checkpoint["asr"] = {
            "format": FORMAT_VERSION,
            "dims": self.model.dims.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "config": self.config.to_dict(),
        }
        # Random generators (SpecAugment masks, dropout, speed perturbation), so a resumed run draws
        # what the uninterrupted one would have drawn.
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "python": _plain(random.getstate())}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state()
        checkpoint["skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint):
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate(_tuples(rng["python"]))
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
        self.skipped_steps = checkpoint.get("skipped_steps", 0)

    def on_validation_epoch_start(self):
        self._val_sums = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        if not batch["ids"]:
            return None
        logits, out_lens = self(batch["audio"], batch["audio_lens"])
        loss = self.ctc_loss(logits, out_lens, batch["targets"], batch["target_lens"])
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["ids"]))
        hyps = [normalize(h) for h in greedy_decode(logits, out_lens, self.tokenizer)]  # as `asr evaluate` scores
        self._val_sums += torch.tensor(error_counts(batch["texts"], hyps), dtype=torch.float64, device=self.device)

    def on_train_epoch_end(self):
        """A whole epoch without one readable file is a failed run, not a model: stop and say so."""
        run, readable = self.trainer.strategy.reduce(self._epoch_batches, reduce_op="sum").tolist()  # all ranks
        if run and not readable:
            raise ASRError(
                f"{self.config.data.train}: no training audio could be read in epoch "
                f"{self.current_epoch} ({int(run)} batches, every file failed; see the messages above)"
            )

    def on_validation_epoch_end(self):
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")  # all ranks' counts
        if sums[1] == 0 and not self.trainer.sanity_checking:  # a WER of 0/0 would pass for a perfect score
            raise ASRError(
                f"{self.config.data.val}: no validation utterance could be scored (every file "
                f"failed to load or had an empty transcript; see the messages above)"
            )
        self.log("val_wer", (sums[0] / sums[1].clamp(min=1)).float(), prog_bar=True)
        self.log("val_cer", (sums[2] / sums[3].clamp(min=1)).float())

    def configure_optimizers(self):
        optimizer, opt_cfg = self.make_optimizer(), self.config.optim
        total = self.trainer.estimated_stepping_batches  # inf when only trainer.max_time limits the run:
        total = max(1, int(total)) if math.isfinite(total) else math.inf  # the decay then follows the clock alone
        schedule = WarmupDecay(opt_cfg.warmup_steps, total, opt_cfg.final_lr_ratio, opt_cfg.decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def make_optimizer(self) -> torch.optim.AdamW:
        opt_cfg = self.config.optim
        # Fused AdamW, in every precision: one kernel for all weights (AdamW.step 6.8 -> 3.0 ms a step for
        # the demo model on 2 CPU threads), and it skips a non-finite step on the device (found_inf), where
        # GradScaler would read its flag on the host before any other optimizer's step. Lightning allows it
        # under 16-mixed: it only refuses to clip for a fused optimizer (MixedPrecision.clip_gradients,
        # pytorch_lightning/plugins/precision/amp.py), and this module clips, after unscaling itself.
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=opt_cfg.lr, betas=(0.9, 0.98), weight_decay=opt_cfg.weight_decay, fused=True
        )

        def keep_fused(opt):  # a resumed checkpoint's param groups carry the flag they were saved with,
            for group in opt.param_groups:  # and an unfused one's step counts sit on the CPU: the fused
                group["fused"] = True  # kernel wants them as float32 beside the weights
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].to(p.device, torch.float32)

        optimizer.register_load_state_dict_post_hook(keep_fused)
        return optimizer


def _plain(state):
    """random.getstate() -> nested lists (checkpoints hold plain data only)."""
    return [_plain(x) for x in state] if isinstance(state, tuple) else state


def _tuples(state):
    return tuple(_tuples(x) for x in state) if isinstance(state, list) else state


class WarmupDecay:
    """LR multiplier: linear warm-up over `warmup` steps, then decay to `final` at `total`, along a
    half cosine (`shape="cosine"`) or a straight line (`"linear"`).

    With a time budget (trainer.max_time) the decay follows whichever runs out first, steps or
    time: `time_progress`, the fraction of the budget used, is kept current by FollowTimeBudget.
    A run cut short by the clock then still ends at the low LR, not in mid-schedule (a demo cut at
    89% of its steps scored 25.4% WER against 24.1% for the whole schedule; RESULTS.md).
    A class rather than a closure so LambdaLR can save it in a checkpoint as plain data.
    """

    SHAPES = ("cosine", "linear")

    def __init__(self, warmup: int, total: int, final: float, shape: str = "cosine"):
        self.warmup, self.total, self.final, self.shape = warmup, total, final, shape
        self.time_progress = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        progress = min(1.0, max(progress, self.time_progress))
        left = 1 - progress if self.shape == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return self.final + (1 - self.final) * left
