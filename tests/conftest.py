"""Shared fixtures: a tiny synthetic corpus and a model trained to overfit it (built once per run)."""

import http.server
import threading
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def shared_data(*parts) -> Path:
    """A path under ../shared/data; the test is skipped when it is absent (a user's fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def bare_trainer(tmp_path, **kwargs):
    """A CPU Trainer with no logger, checkpoints, progress bar or summary: only the loop under test."""
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


@pytest.fixture
def run_cli(capsys):
    """Run `asr ARGV...` in-process -> (exit code, stdout, stderr)."""
    from asr.cli import main

    def run(*argv):
        try:
            main(list(map(str, argv)))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from asr.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus")
    manifests = synthesize_corpus(
        out, train_utts=8, dev_utts=2, test_utts=4, vocab_size=300, seed=7, workers=1, log=lambda *a: None
    )
    return out, manifests


OVERFIT_CONFIG = {
    "seed": 0,
    "features": {"specaugment": {"freq_masks": 0, "time_masks": 0}},
    "model": {"subsample": "stack", "subsample_factor": 2, "hidden": 160, "layers": 2, "dropout": 0.0},
    "optim": {"lr": 4e-3, "weight_decay": 0.0, "warmup_steps": 20, "final_lr_ratio": 0.1},
    # 110 epochs of 16 s batches (several an epoch) memorise the 8 utterances as 220 epochs of one batch did,
    # in half the time (train CER 0% either way; 80 epochs leave 3.9%)
    "trainer": {
        "max_epochs": 110,
        "check_val_every_n_epoch": 55,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 10,
    },
}


@pytest.fixture(scope="session")
def overfit_run(tiny_corpus, tmp_path_factory):
    """Train on the 8 training utterances, validate on the same 8: learning works end to end."""
    from asr.config import Config
    from asr.training.train import train

    _, manifests = tiny_corpus
    out = tmp_path_factory.mktemp("run")
    config = Config.from_dict(
        {
            **OVERFIT_CONFIG,
            "out_dir": str(out),
            "data": {
                "train": str(manifests["train"]),
                "val": str(manifests["train"]),
                "max_batch_seconds": 16,
                "num_workers": 0,
            },
        }
    )
    best = train(config)
    return out, best


@pytest.fixture(scope="session")
def exported(overfit_run, tmp_path_factory):
    """The overfit model exported (ONNX): what a deployment runs."""
    from asr.export import export

    folder = tmp_path_factory.mktemp("export") / "model"
    export(overfit_run[1], folder, log=lambda *a: None)
    return folder


@pytest.fixture(scope="session")
def aligned_run(tmp_path_factory):
    """A model trained briefly on 150 synthetic utterances: unlike the overfit model (whose CTC spikes
    drift once it memorises 8 utterances), it emits tokens where the speech is, as trained models do."""
    from asr.config import Config
    from asr.data.synth import synthesize_corpus
    from asr.training.train import train

    manifests = synthesize_corpus(
        tmp_path_factory.mktemp("corpus150"),
        train_utts=150,
        dev_utts=4,
        test_utts=4,
        vocab_size=200,
        seed=3,
        workers=2,
        log=lambda *a: None,
    )
    config = Config.from_dict(
        {
            **OVERFIT_CONFIG,
            "trainer": {**OVERFIT_CONFIG["trainer"], "max_epochs": 20, "check_val_every_n_epoch": 20},
            "model": {**OVERFIT_CONFIG["model"], "subsample_factor": 4},
            "out_dir": str(tmp_path_factory.mktemp("aligned")),
            "data": {
                "train": str(manifests["train"]),
                "val": str(manifests["dev"]),
                "max_batch_seconds": 60,
                "num_workers": 0,
            },
        }
    )
    return manifests, train(config)


@pytest.fixture
def server():
    """A local HTTP server for `state["files"]`; optionally cuts the first response half way."""
    state = {"files": {}, "requests": [], "cut_first": False, "honor_range": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["requests"].append((self.path, self.headers.get("Range")))
            data = state["files"].get(self.path)
            if data is None:
                self.send_error(404)
                return
            start, rng = 0, self.headers.get("Range")
            if rng and state["honor_range"]:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state["cut_first"] and len(state["requests"]) == 1:
                self.wfile.write(body[: len(body) // 2])  # then drop the connection
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
