"""`asr export` and the ONNX runtime: the exported folder gives the PyTorch path's emissions and text,
also where torch cannot be imported at all."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import asr
from asr.data.manifest import read_manifest
from asr.errors import ASRError

# Run first in a subprocess: every import of torch (or of anything that needs it) fails, as on a machine
# where only the runtime's packages are installed.
NO_TORCH = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchaudio", "pytorch_lightning", "lightning", "librosa"}:
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
"""


@pytest.fixture(scope="session")
def test_rows(tiny_corpus):
    return read_manifest(tiny_corpus[1]["test"]) + read_manifest(tiny_corpus[1]["train"])[:4]


def test_the_dft_log_mel_equals_the_stft_one():
    from asr.export import DFTLogMel
    from asr.features import LogMel

    log_mel = LogMel(80, 80.0)
    audio = torch.randn(3, 12345) * torch.tensor([[1.0], [0.01], [1e-4]])  # loud, quiet, very quiet
    torch.testing.assert_close(DFTLogMel(log_mel)(audio), log_mel(audio), atol=2e-4, rtol=1e-4)


def test_exported_model_gives_the_checkpoints_emissions_and_text(overfit_run, exported, test_rows):
    by_torch, by_onnx = asr.load_model(overfit_run[1], "cpu"), asr.load_model(exported)
    assert type(by_onnx.network).__name__ == "OnnxNetwork"
    waves = [asr.load_audio(r["audio"]) for r in test_rows]
    for a, b in zip(by_torch.emissions(waves), by_onnx.emissions(waves)):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-3)  # the tolerance the README states
    paths = [r["audio"] for r in test_rows]
    torch_results, onnx_results = by_torch.transcribe_many(paths), by_onnx.transcribe_many(paths)
    assert [r.text for r in onnx_results] == [r.text for r in torch_results]
    assert any(r.text for r in onnx_results)
    assert [[w.as_dict() for w in r.words] for r in onnx_results] == [
        [w.as_dict() for w in r.words] for r in torch_results
    ]


def test_exported_model_runs_where_torch_cannot_be_imported(overfit_run, exported, test_rows):
    expected = asr.load_model(overfit_run[1], "cpu").transcribe_many([r["audio"] for r in test_rows])
    script = NO_TORCH + (
        "import asr\n"
        f"model = asr.load_model({str(exported)!r})\n"
        f"for path in {[r['audio'] for r in test_rows]!r}:\n"
        "    print(model.transcribe(path).text)\n"
        "from asr.cli import main\n"
        f"main(['transcribe', '--model', {str(exported)!r}, '--format', 'json', {test_rows[0]['audio']!r}])\n"
        "assert not {'torch', 'torchaudio', 'pytorch_lightning', 'librosa'} & set(sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[: len(test_rows)] == [r.text for r in expected]
    assert json.loads(lines[len(test_rows)])["text"] == expected[0].text


def test_export_covers_every_front_end_and_network_option(tmp_path):
    """Conv subsampling, concatenated directions, edge padding, per-utterance normalisation, a subword-free
    char vocabulary: random weights, so only the graph is tested, against PyTorch on ragged batches."""
    from asr.checkpoint import write_checkpoint
    from asr.export import export
    from asr.model import ASRModel, ModelDims
    from asr.runtime import OnnxNetwork, TorchNetwork
    from asr.text import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDims(
        vocab_size=tokenizer.vocab_size,
        n_mels=64,
        edge_pad_ms=50.0,
        normalize="per_utterance",
        taper_ms=5.0,
        subsample="conv",
        subsample_factor=4,
        hidden=48,
        layers=2,
        merge="concat",
    )
    model = ASRModel(dims).eval()
    ckpt = write_checkpoint(tmp_path / "random.ckpt", model, tokenizer)
    export(ckpt, tmp_path / "out", log=lambda *a: None)
    onnx, ref = OnnxNetwork(tmp_path / "out" / "model.onnx", model.frame_samples, "cpu"), TorchNetwork(model)
    rng = np.random.default_rng(0)
    for lengths in ([400], [16000, 9000, 401], [5 * 16000, 16000]):
        audio = np.zeros((len(lengths), max(lengths)), np.float32)
        for i, n in enumerate(lengths):
            audio[i, :n] = 0.1 * rng.standard_normal(n)
        lens = np.array(lengths, np.int64)
        (a, a_lens), (b, b_lens) = ref(audio, lens), onnx(audio, lens)
        assert np.array_equal(a_lens, b_lens) and a.shape == b.shape
        real = np.arange(a.shape[1])[None, :] < a_lens[:, None]
        np.testing.assert_allclose(b[real], a[real], atol=1e-3)


def test_int8_export_is_smaller_and_still_transcribes(overfit_run, exported, test_rows, tmp_path):
    from asr.export import export
    from asr.metrics import wer

    export(overfit_run[1], tmp_path / "int8", int8=True, log=lambda *a: None)
    assert json.loads((tmp_path / "int8" / "model.json").read_text())["weights"] == "int8"
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 0.5 * (exported / "model.onnx").stat().st_size
    paths = [r["audio"] for r in test_rows]
    fp32 = [r.text for r in asr.load_model(exported).transcribe_many(paths)]
    int8 = [r.text for r in asr.load_model(tmp_path / "int8").transcribe_many(paths)]
    assert wer(fp32, int8) < 0.25  # close to float32: the front end is not quantised (a quantised one: ~100%)


def test_model_card_carries_the_evaluations_of_these_weights(overfit_run, tiny_corpus, tmp_path):
    from asr.evaluate import evaluate, read_eval_data
    from asr.export import export

    run, best = overfit_run
    model = asr.load_model(best, "cpu")
    summary = evaluate(
        model, read_eval_data(tiny_corpus[1]["train"]), run / "eval-card-train", log=lambda *a: None, data="train.jsonl"
    )
    assert summary["model"]["sha256"] and summary["data"] == "train.jsonl"
    export(best, tmp_path / "card", log=lambda *a: None)
    card = (tmp_path / "card" / "MODEL.md").read_text()
    assert f"| train.jsonl | greedy | {100 * summary['wer']:.2f}% |" in card
    info = json.loads((tmp_path / "card" / "model.json").read_text())
    assert info["card"]["training"]["utterances"] == 8 and info["card"]["training"]["hours"] > 0
    assert info["card"]["config"]["model"]["hidden"] == 160
    assert info["card"]["export"]["max_logit_difference"] < 1e-3


def test_export_includes_tuned_decoding_settings_with_their_lm(overfit_run, tiny_corpus, tmp_path, test_rows):
    from asr.decoding import DecodingOptions
    from asr.export import export

    words = sorted({w for r in read_manifest(tiny_corpus[1]["train"]) for w in r["text"].split()})
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    (tmp_path / "decoding.yaml").write_text(f"decoder: beam\nlexicon: {tmp_path / 'words.txt'}\nbeam_size: 8\n")
    export(overfit_run[1], tmp_path / "out", decoding=tmp_path / "decoding.yaml", log=lambda *a: None)
    assert (tmp_path / "out" / "words.txt").is_file()
    options = DecodingOptions.load(tmp_path / "out" / "decoding.yaml")
    assert options.lexicon == str(tmp_path / "out" / "words.txt") and options.beam_size == 8
    result = asr.load_model(tmp_path / "out").transcribe(test_rows[-1]["audio"], options)
    assert set(result.text.split()) <= set(words)


def test_broken_exported_folders_are_one_line_errors(exported, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ASRError, match="not an exported model: expected model.json and model.onnx"):
        asr.load_model(empty)
    newer = tmp_path / "newer"
    shutil.copytree(exported, newer)
    info = json.loads((newer / "model.json").read_text())
    (newer / "model.json").write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(ASRError, match="export format 99 is not one this version of asr reads"):
        asr.load_model(newer)
    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    (damaged / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ASRError, match="model.onnx: not a loadable ONNX model"):
        asr.load_model(damaged)


def test_a_format_1_export_is_read_as_the_same_model(exported, test_rows, tmp_path):
    """model.json format 1 held the model description as model_args {"frontend", "network"}."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(exported, old)
    info = json.loads((old / "model.json").read_text())
    dims = info.pop("dims")
    frontend = {k: dims.pop(k) for k in ("n_mels", "dynamic_range_db", "taper_ms", "edge_pad_ms", "normalize")}
    (old / "model.json").write_text(
        json.dumps({**info, "format": 1, "model_args": {"frontend": frontend, "network": dims}})
    )
    model = asr.load_model(old)
    assert model.info["dims"] == json.loads((exported / "model.json").read_text())["dims"]
    assert "model_args" not in model.info
    path = test_rows[0]["audio"]
    assert model.transcribe(path).text == asr.load_model(exported).transcribe(path).text


def test_export_refuses_a_folder_that_holds_files(overfit_run, exported, run_cli):
    code, _, err = run_cli("export", "--checkpoint", overfit_run[1], "--out", exported)
    assert code == 1 and "exists and is not an empty folder" in err


def test_a_failed_export_leaves_nothing_behind(overfit_run, tmp_path, monkeypatch):
    import asr.export

    monkeypatch.setattr(asr.export, "CHECK_TOLERANCE", -1.0)  # every export now fails its check
    with pytest.raises(ASRError, match="logits differ from PyTorch's"):
        asr.export.export(overfit_run[1], tmp_path / "out", log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []
