"""Fine-tuning: `asr train --init CKPT` starts from a trained model's weights and tokenizer."""

import json
import re

import yaml
from conftest import OVERFIT_CONFIG


def _write_config(tmp_path, manifest, **sections):
    config = {
        **OVERFIT_CONFIG,
        **sections,
        "out_dir": str(tmp_path / "run"),
        "data": {"train": str(manifest), "val": str(manifest), "max_batch_seconds": 200, "num_workers": 0},
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fine_tuning_starts_from_the_checkpoint(overfit_run, tiny_corpus, tmp_path, run_cli, caplog):
    _, manifests = tiny_corpus
    _, best = overfit_run
    # A model section and tokenizer that differ from the checkpoint's, and an LR too small to learn
    # anything in 2 steps: the run can only score well with the checkpoint's model and weights.
    path = _write_config(
        tmp_path,
        manifests["train"],
        model={"hidden": 32, "layers": 1},
        features={**OVERFIT_CONFIG["features"], "edge_pad_ms": 40},
        tokenizer={"kind": "bpe", "vocab_size": 40},
        optim={"lr": 1e-7, "warmup_steps": 1},
        trainer={"max_epochs": 2, "enable_progress_bar": False, "enable_model_summary": False},
    )
    code, out, _ = run_cli("train", "--config", path, "--init", best)
    assert code == 0
    adopted = "tokenizer, features.edge_pad_ms, model.subsample_factor, model.hidden, model.layers"
    assert f"using the checkpoint's {adopted}, not this config's" in caplog.text
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["hidden"] == OVERFIT_CONFIG["model"]["hidden"] and saved["tokenizer"]["kind"] == "char"
    assert saved["features"]["edge_pad_ms"] == 0.0
    ended = [m for m in caplog.messages if m.startswith("training ended")]
    assert len(ended) == 1 and re.fullmatch(
        r"training ended at step (\d+) of \1; val WER [\d.]+% in best.ckpt, [\d.]+% at the last validation", ended[0]
    )
    assert any(
        re.fullmatch(r"asr train: \d+ min \d\d s from the command's start to its last checkpoint", m)
        for m in caplog.messages
    )
    new_best = out.strip().split("best checkpoint: ")[-1]
    code, _, _ = run_cli("evaluate", "--checkpoint", new_best, "--data", manifests["train"], "--out", tmp_path / "eval")
    assert code == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["cer"] < 0.05


def test_fine_tuning_from_a_missing_checkpoint_is_one_line(tiny_corpus, tmp_path, run_cli):
    _, manifests = tiny_corpus
    path = _write_config(tmp_path, manifests["train"])
    code, _, err = run_cli("train", "--config", path, "--init", tmp_path / "nope.ckpt")
    assert code != 0
    assert "nope.ckpt: checkpoint not found" in err and "Traceback" not in err
