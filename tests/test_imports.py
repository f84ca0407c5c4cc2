"""The inference path's boundary: every module it uses imports with torch, torchaudio, Lightning and librosa
made unimportable, and pulls in no training or run-config code (what it shares with training, packing and
padding, the options reader and the model description, lives in torch-free modules)."""

import subprocess
import sys

from test_export import NO_TORCH

INFERENCE = [
    "asr",
    "asr.audio",
    "asr.cli",
    "asr.decoding",
    "asr.dims",
    "asr.errors",
    "asr.evaluate",
    "asr.metrics",
    "asr.ngram",
    "asr.packing",
    "asr.runs",
    "asr.runtime",
    "asr.schema",
    "asr.serve",
    "asr.serve.app",
    "asr.text",
    "asr.transcribe",
    "asr.writers",
    "asr.data.manifest",
]
TRAINING = [
    "asr.config",
    "asr.training",
    "asr.data.batching",
    "asr.data.loader",
    "asr.data.shards",
    "asr.checkpoint",
    "asr.model",
    "asr.features",
    "asr.export",
]


def test_inference_modules_import_without_torch_or_training_code():
    script = NO_TORCH + (
        f"import importlib\nfor name in {INFERENCE!r}:\n    importlib.import_module(name)\n"
        "import asr\nasr.DecodingOptions, asr.Model, asr.Result, asr.Word, asr.load_model, asr.load_audio\n"
        f"print(sorted(m for m in sys.modules if m.startswith(tuple({TRAINING!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_boundary_test_would_catch_a_torch_import():
    """The same harness fails where torch is imported: the test above can fail."""
    out = subprocess.run(
        [sys.executable, "-c", NO_TORCH + "import asr.model\n"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "No module named 'torch'" in out.stderr
