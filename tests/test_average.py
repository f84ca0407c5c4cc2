"""Checkpoint averaging: a run keeps its last snapshots, `asr average` makes their mean a checkpoint."""

import pytest
import torch

import asr
from asr.checkpoint import average_checkpoints, model_weights, read_checkpoint


@pytest.fixture(scope="module")
def snapshot_run(tiny_corpus, tmp_path_factory):
    from asr.config import Config
    from asr.training.train import train

    _, manifests = tiny_corpus
    out = tmp_path_factory.mktemp("snapshots")
    config = Config.from_dict(
        {
            "out_dir": str(out),
            "data": {
                "train": str(manifests["train"]),
                "val": str(manifests["dev"]),
                "num_workers": 0,
                "max_batch_seconds": 20,
            },
            "model": {"hidden": 32, "layers": 2, "subsample_factor": 2},
            "checkpoint": {"keep_last": 3, "last_every_n_steps": 1},
            "trainer": {"max_epochs": 3, "enable_progress_bar": False, "enable_model_summary": False},
        }
    )
    train(config)
    return out


def test_a_run_keeps_its_last_snapshots_and_their_mean_loads(snapshot_run, tiny_corpus, tmp_path, run_cli):
    snapshots = sorted((snapshot_run / "checkpoints" / "snapshots").glob("step-*.ckpt"))
    assert len(snapshots) == 3  # older ones were removed as new ones came
    steps = [int(p.stem.split("-")[1]) for p in snapshots]
    assert steps == sorted(steps) and len(set(steps)) == 3
    code, out, err = run_cli("average", "--run", snapshot_run, "--last", 3, "--out", tmp_path / "avg.ckpt")
    assert code == 0, err
    weights = [model_weights(read_checkpoint(p)["state_dict"]) for p in snapshots]
    averaged = model_weights(read_checkpoint(tmp_path / "avg.ckpt")["state_dict"])
    for key, value in averaged.items():
        torch.testing.assert_close(value, sum(w[key] for w in weights) / 3)
    assert not torch.equal(weights[0]["network.proj.weight"], weights[-1]["network.proj.weight"])  # they did differ
    row_audio = next(iter(sorted((tiny_corpus[0]).rglob("*.flac"))))
    assert isinstance(asr.load_model(tmp_path / "avg.ckpt", "cpu").transcribe(row_audio).text, str)


def test_checkpoints_of_different_models_are_not_averaged(snapshot_run, overfit_run, tmp_path, run_cli):
    one = sorted((snapshot_run / "checkpoints" / "snapshots").glob("step-*.ckpt"))[-1]
    with pytest.raises(asr.ASRError, match="not the same model and tokenizer"):
        average_checkpoints([one, overfit_run[1]], tmp_path / "x.ckpt")
    with pytest.raises(asr.ASRError, match="at least 2 checkpoints"):
        average_checkpoints([one], tmp_path / "x.ckpt")
    code, _, err = run_cli("average", "--run", tmp_path, "--out", tmp_path / "y.ckpt")
    assert code == 1 and "train with checkpoint.keep_last" in err
    assert not (tmp_path / "x.ckpt").exists() and not (tmp_path / "y.ckpt").exists()


def test_average_arguments_are_checked(snapshot_run, tmp_path, run_cli):
    code, _, err = run_cli("average", "--run", snapshot_run, "--last", 1, "--out", tmp_path / "a.ckpt")
    assert code == 1 and "--last 1: averaging needs at least 2" in err
    code, _, err = run_cli("average", "--run", snapshot_run, "--last", 4, "--out", tmp_path / "a.ckpt")
    assert code == 1 and "3 snapshot(s)" in err and "4 asked for" in err
    one = sorted((snapshot_run / "checkpoints" / "snapshots").glob("step-*.ckpt"))[-1]
    code, _, err = run_cli("average", "--run", snapshot_run, "--checkpoints", one, one, "--out", tmp_path / "a.ckpt")
    assert code == 2 and "not allowed with argument" in err  # argparse: one source of checkpoints, not both
    assert not (tmp_path / "a.ckpt").exists()


def test_a_checkpoint_without_a_training_config_loads_but_does_not_fine_tune(overfit_run, tiny_corpus, tmp_path):
    from asr.checkpoint import load_model_and_tokenizer, write_checkpoint
    from asr.config import Config
    from asr.training.train import pretrained_module

    model, tokenizer, _ = load_model_and_tokenizer(overfit_run[1])
    bare = write_checkpoint(tmp_path / "bare.ckpt", model, tokenizer)  # as a benchmark or an export might write it
    clip = sorted(tiny_corpus[0].rglob("*.flac"))[0]
    assert (
        asr.load_model(bare, "cpu").transcribe(clip).text == asr.load_model(overfit_run[1], "cpu").transcribe(clip).text
    )
    manifests = tiny_corpus[1]
    config = Config.from_dict(
        {"init_from": str(bare), "data": {"train": str(manifests["train"]), "val": str(manifests["dev"])}}
    )
    with pytest.raises(asr.ASRError, match="bare.ckpt: holds no training config"):
        pretrained_module(config)


def test_an_averaged_checkpoint_outside_checkpoints_gets_its_report_and_its_model_card(
    snapshot_run, tiny_corpus, tmp_path, run_cli
):
    """`asr average --out elsewhere/avg.ckpt`, then `asr evaluate` and `asr export` on it: the report goes beside
    the checkpoint (its run folder, asr.runs), and the export's model card finds it there."""
    import json

    avg = tmp_path / "elsewhere" / "avg.ckpt"
    avg.parent.mkdir()
    assert run_cli("average", "--run", snapshot_run, "--last", 2, "--out", avg)[0] == 0
    test = tiny_corpus[1]["test"]
    code, out, err = run_cli("evaluate", "--checkpoint", avg, "--data", test)
    assert code == 0, err
    report = avg.parent / f"eval-{test.stem}" / "summary.json"
    assert report.is_file() and not (tmp_path / f"eval-{test.stem}").exists()
    code, _, err = run_cli("export", "--checkpoint", avg, "--out", tmp_path / "model")
    assert code == 0, err
    card = json.loads((tmp_path / "model" / "model.json").read_text())["card"]
    assert [e["wer"] for e in card["evaluations"]] == [json.loads(report.read_text())["wer"]]
