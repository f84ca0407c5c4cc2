"""The LightningModule: features + model + CTC loss, the optimiser and its schedule, validation WER."""
import math

import jiwer
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from asr.decoding import greedy_decode
from asr.features import LogMel, SpecAugment, normalize_features, num_frames
from asr.model import BiLSTMCTC
from asr.text import BLANK, tokenizer_from_dict


class CTCModule(pl.LightningModule):
    """Holds everything a checkpoint needs to transcribe: feature extractor, model, tokenizer, config.

    `config` is the plain-data run config (features/model/optim sections are used here); it is
    saved into every checkpoint under "asr" together with the tokenizer, so a checkpoint alone
    rebuilds the model.
    """

    def __init__(self, config: dict, tokenizer):
        super().__init__()
        self.config, self.tokenizer = config, tokenizer
        feat = config["features"]
        self.features = LogMel(feat["n_mels"])
        self.specaugment = SpecAugment(**feat.get("specaugment", {}))
        self.model = BiLSTMCTC(tokenizer.vocab_size, n_mels=feat["n_mels"], **config["model"])
        self._val_sums = torch.zeros(4)  # word errors, words, char errors, chars

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor):
        """(B, S) waveforms, (B,) sample counts -> (B, T', V) logits, (B,) frame counts."""
        lengths = num_frames(audio_lens)
        feats = normalize_features(self.features(audio), lengths)  # (B, T, n_mels)
        feats = self.specaugment(feats, lengths)  # identity in eval mode
        return self.model(feats, lengths)

    def ctc_loss(self, logits, out_lens, targets, target_lens):
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T', B, V), fp32 for CTC
        return F.ctc_loss(log_probs, targets, out_lens, target_lens, blank=BLANK,
                          reduction="mean", zero_infinity=True)

    def training_step(self, batch, batch_idx):
        if not batch["ids"]:
            return None  # every file in this batch failed to decode (already logged): skip the step
        logits, out_lens = self(batch["audio"], batch["audio_lens"])
        loss = self.ctc_loss(logits, out_lens, batch["targets"], batch["target_lens"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def on_validation_epoch_start(self):
        self._val_sums = torch.zeros(4, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx):
        if not batch["ids"]:
            return None
        logits, out_lens = self(batch["audio"], batch["audio_lens"])
        loss = self.ctc_loss(logits, out_lens, batch["targets"], batch["target_lens"])
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["ids"]))
        hyps = greedy_decode(logits, out_lens, self.tokenizer)
        self._val_sums += torch.tensor(error_counts(batch["texts"], hyps), dtype=torch.float64, device=self.device)

    def on_validation_epoch_end(self):
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")  # all ranks' counts
        self.log("val_wer", (sums[0] / sums[1].clamp(min=1)).float(), prog_bar=True)
        self.log("val_cer", (sums[2] / sums[3].clamp(min=1)).float())

    def configure_optimizers(self):
        opt_cfg = self.config["optim"]
        optimizer = torch.optim.AdamW(self.parameters(), lr=opt_cfg["lr"], betas=(0.9, 0.98),
                                      weight_decay=opt_cfg["weight_decay"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = WarmupCosine(opt_cfg["warmup_steps"], total, opt_cfg["final_lr_ratio"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        # Plain data only, so checkpoints load with torch.load(weights_only=True).
        checkpoint["asr"] = {"format": 1, "config": self.config, "tokenizer": self.tokenizer.to_dict()}

    @classmethod
    def from_asr_dict(cls, asr: dict) -> "CTCModule":
        return cls(asr["config"], tokenizer_from_dict(asr["tokenizer"]))


class WarmupCosine:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to `final` at `total`.

    A class rather than a closure so LambdaLR can save it in a checkpoint as plain data.
    """

    def __init__(self, warmup: int, total: int, final: float):
        self.warmup, self.total, self.final = warmup, total, final

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))


def error_counts(refs: list[str], hyps: list[str]) -> tuple[int, int, int, int]:
    """(word errors, reference words, char errors, reference chars) for normalised texts."""
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        return 0, 0, 0, 0
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    word_err = words.substitutions + words.deletions + words.insertions
    char_err = chars.substitutions + chars.deletions + chars.insertions
    return word_err, sum(len(r.split()) for r in refs), char_err, sum(len(r) for r in refs)
