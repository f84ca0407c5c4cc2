"""Lightning DDP on CPU (gloo), 2 processes: each rank trains on disjoint batches, same step count."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import pytorch_lightning as pl
    from asr.config import Config
    from asr.data.loader import SpeechDataModule
    from asr.text import CharTokenizer
    from asr.training.module import CTCModule
    from asr.training.train import build_trainer

    class RecordIds(pl.Callback):
        """Writes the utterance ids of every training batch this rank sees."""
        def __init__(self, out):
            self.out, self.seen = out, []
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.seen.append([trainer.current_epoch, trainer.global_rank, batch["ids"]])
        def on_train_end(self, trainer, module):
            with open(f"{self.out}/rank{trainer.global_rank}.json", "w") as f:
                json.dump({"seen": self.seen, "world": trainer.world_size, "step": trainer.global_step,
                           "loss": [float(module.trainer.callback_metrics.get("train_loss", -1))]}, f)

    if __name__ == "__main__":
        manifest, out = sys.argv[1], sys.argv[2]
        config = Config.from_dict({
            "out_dir": out, "model": {"hidden": 32, "layers": 1, "subsample_factor": 4},
            "data": {"train": manifest, "val": manifest, "max_batch_seconds": 8, "num_workers": 0},
            "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                        "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1}})
        tokenizer = CharTokenizer()
        module = CTCModule(config, tokenizer)
        data = SpeechDataModule(config.data, tokenizer, module.model.network.subsample.output_lengths)
        trainer = build_trainer(config, __import__("pathlib").Path(out))
        trainer.callbacks.append(RecordIds(out))
        trainer.fit(module, datamodule=data)
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()  # as asr.training.train.train does
''')


@pytest.mark.slow
def test_two_process_ddp_ranks_see_disjoint_data_and_train(tiny_corpus, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    # One utterance whose file is gone, long enough to fill a batch alone: the rank that draws that empty
    # batch must still join the gradient all-reduce, or the ranks' collectives fall out of step.
    from asr.data.manifest import read_manifest, write_manifest

    rows = read_manifest(tiny_corpus[1]["train"])
    manifest = write_manifest(
        tmp_path / "train.jsonl",
        rows + [{**rows[0], "id": "gone", "duration": 7.9, "audio": str(tmp_path / "gone.flac")}],
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(manifest), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["step"] == ranks[1]["step"] > 0  # same number of optimizer steps on both ranks
    for epoch in (0, 1):
        ids = [{i for e, _, batch in r["seen"] if e == epoch for i in batch} for r in ranks]
        assert ids[0] and ids[1] and not ids[0] & ids[1]  # disjoint shares of the data
    assert any(batch == [] for r in ranks for _, _, batch in r["seen"])  # the empty batch was trained through
    assert (out / "checkpoints" / "last.ckpt").is_file()
