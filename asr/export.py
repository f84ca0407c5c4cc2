"""`asr export`: a checkpoint -> one folder that runs without PyTorch (asr.runtime):

    model.onnx     the whole inference path, waveform to logits: front end (taper, edge padding, log-mel,
                   normalisation) and network, any batch size and length
    model.json     what the runtime needs (tokenizer, frame rate) and the model card's facts
    MODEL.md       the model card: architecture, training data and hours, licence, WER on every set the
                   checkpoint was evaluated on, how it was exported and how closely it matches PyTorch
    decoding.yaml  (with --decoding) tuned beam-search settings, with their LM and lexicon copied beside

The log-mel is computed with a DFT matrix instead of torch.stft (the ONNX exporter cannot take the
complex STFT); `DFTLogMel` equals `features.LogMel` within float rounding, and the export itself
checks the ONNX model's logits against the PyTorch model's: a model that fails the check is not written.
"""

import copy
import dataclasses
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from asr.audio import SAMPLE_RATE
from asr.errors import ASRError, file_error
from asr.features import HOP_LENGTH, N_FFT
from asr.runs import DECODING, reports, run_of
from asr.runtime import EXPORT_FORMAT, INFO_FILE, ONNX_FILE, fingerprint

OPSET = 17
CHECK_TOLERANCE = 1e-3  # max |logit difference| allowed between the ONNX graph and PyTorch (fp32)


class DFTLogMel(nn.Module):
    """features.LogMel with the STFT as one strided convolution by a windowed DFT basis:
    (B, S) waveforms -> (B, frames, n_mels), the same values (centred, zero-padded frames, Hann window,
    power, Slaney mel filterbank, peak-relative log floor)."""

    def __init__(self, log_mel):
        super().__init__()
        window = log_mel.mel.spectrogram.window.double()  # (N_FFT,) the periodic Hann window torchaudio uses
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(N_FFT, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / N_FFT
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2F, N_FFT): real, imaginary
        self.register_buffer("basis", basis.float()[:, None, :])  # (2F, 1, N_FFT) conv1d kernels
        self.register_buffer("fb", log_mel.mel.mel_scale.fb.float())  # (F, n_mels)
        self.dynamic_range_db = log_mel.dynamic_range_db

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(audio[:, None, :], (N_FFT // 2, N_FFT // 2))  # centred frames
        real, imag = nn.functional.conv1d(x, self.basis, stride=HOP_LENGTH).chunk(2, dim=1)  # (B, F, T) each
        mel = (real * real + imag * imag).transpose(1, 2) @ self.fb  # (B, T, n_mels) power
        peak = mel.amax(dim=(1, 2), keepdim=True).clamp(min=1e-30)
        return torch.log(mel + peak * 10 ** (-self.dynamic_range_db / 10))


def exportable(model):
    """An ASRModel -> a copy whose front end the ONNX exporter can take (same weights, same outputs)."""
    model = copy.deepcopy(model).cpu().eval()
    model.frontend.log_mel = DFTLogMel(model.frontend.log_mel)
    return model


def check_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch of three utterances (0.5 s to 6 s of tones in noise) for checking an export."""
    rng = np.random.default_rng(seed)
    waves = []
    for seconds in (6.0, 2.3, 0.5):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        tone = sum(np.sin(2 * np.pi * f * t * (1 + 0.1 * np.sin(3 * t))) for f in rng.uniform(100, 3000, 4))
        waves.append((0.05 * tone + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
    from asr.packing import pad

    return pad(waves)


def export_onnx(model, path: Path) -> None:
    """ASRModel -> ONNX graph at `path`: inputs audio (B, S) float32, audio_lens (B,) int64; outputs
    logits (B, T', V) float32, logit_lens (B,) int64. Batch and length are dynamic."""
    audio, lens = map(torch.from_numpy, check_inputs())
    with warnings.catch_warnings():  # the tracer's notes on Python control flow: every branch taken is
        warnings.simplefilter("ignore")  # the same for any input of at least MIN_SAMPLES, which all are
        torch.onnx.export(
            exportable(model),
            (audio, lens),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["audio", "audio_lens"],
            output_names=["logits", "logit_lens"],
            dynamic_axes={
                "audio": {0: "batch", 1: "samples"},
                "audio_lens": {0: "batch"},
                "logits": {0: "batch", 1: "frames"},
                "logit_lens": {0: "batch"},
            },
        )


def quantize_int8(path: Path) -> None:
    """Dynamic int8 quantisation in place (onnxruntime): the network's LSTM and projection weights become
    int8, their inputs are quantised on the fly. The front end stays float32: a power spectrum spans
    ~10 orders of magnitude, which 8 bits cannot hold (quantised, the demo model's WER went to 100%)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.replace(fp32)
    frontend = [
        n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.name.startswith("/frontend/")
    ]
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it logs every tensor it leaves alone
    try:
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, nodes_to_exclude=frontend)
    finally:
        logging.getLogger().setLevel(quiet)
        fp32.unlink()


def compare(model, onnx_path: Path) -> float:
    """The largest |logit difference| between the ONNX model and PyTorch on check_inputs(1), real frames only."""
    from asr.runtime import OnnxNetwork, TorchNetwork

    audio, lens = check_inputs(seed=1)
    ours, ours_lens = OnnxNetwork(onnx_path, model.frame_samples, "cpu")(audio, lens)
    ref, ref_lens = TorchNetwork(model, "cpu")(audio, lens)
    if ours.shape != ref.shape or not np.array_equal(ours_lens, ref_lens):
        raise ASRError(
            f"{onnx_path}: the exported model's output shape {ours.shape} differs from PyTorch's {ref.shape}"
        )
    real = np.arange(ref.shape[1])[None, :] < ref_lens[:, None]
    return float(np.abs(ours - ref)[real].max())


def export(checkpoint, out, int8: bool = False, decoding=None, log=print) -> Path:
    """Write the folder described above for `checkpoint` into `out`; returns `out`."""
    from asr.checkpoint import load_model_and_tokenizer, read_checkpoint

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise file_error(out, "exists and is not an empty folder: choose a new one")
    model, tokenizer, info = load_model_and_tokenizer(checkpoint, "cpu")
    # Everything is written and checked in a folder beside `out`, renamed to `out` only at the end:
    # a failed export leaves nothing behind.
    work = out.with_name(f".{out.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        onnx_path = work / ONNX_FILE
        export_onnx(model, onnx_path)
        fp32_error = compare(model, onnx_path)
        if fp32_error > CHECK_TOLERANCE:
            raise ASRError(
                f"{checkpoint}: the ONNX graph's logits differ from PyTorch's by {fp32_error:.2g} "
                f"(more than {CHECK_TOLERANCE:g}); not exported"
            )
        int8_error = None
        if int8:
            quantize_int8(onnx_path)
            int8_error = compare(model, onnx_path)
        card = model_card(checkpoint, read_checkpoint(checkpoint), model, fp32_error, int8_error)
        description = {
            "format": EXPORT_FORMAT,
            "sample_rate": SAMPLE_RATE,
            "frame_samples": model.frame_samples,
            "weights": "int8" if int8 else "float32",
            "dims": info["dims"],
            "tokenizer": info["tokenizer"],
            "card": card,
        }
        (work / INFO_FILE).write_text(json.dumps(description, indent=1) + "\n")
        (work / "MODEL.md").write_text(render_card(card, out, int8))
        if decoding:
            copy_decoding(Path(decoding), work)
        if out.exists():
            out.rmdir()  # empty, checked above
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    log(
        f"{out}: {ONNX_FILE} ({(out / ONNX_FILE).stat().st_size / 1e6:.1f} MB, {'int8' if int8 else 'float32'}), "
        f"{INFO_FILE}, MODEL.md{', decoding.yaml' if decoding else ''}; {size:.1f} MB in all. "
        f"Largest logit difference from PyTorch: {fp32_error:.1e}" + (f" (int8: {int8_error:.2f})" if int8 else "")
    )
    return out


def copy_decoding(path: Path, out: Path) -> None:
    """decoding.yaml -> out/decoding.yaml, its LM and lexicon copied into `out` and named relative to it."""
    from asr.decoding import DecodingOptions

    options, beside = DecodingOptions.load(path), {}  # checked as the runtime will read it
    for key in ("lm", "lexicon"):
        if getattr(options, key):
            source = Path(getattr(options, key))
            if not source.is_file():
                raise file_error(source, f"the {key} named in {path} is not there")
            shutil.copy2(source, out / source.name)
            beside[key] = source.name
    dataclasses.replace(options, **beside).save(out / DECODING, f"from {path.name}; files named beside it")


def model_card(checkpoint: Path, ckpt: dict, model, fp32_error: float, int8_error) -> dict:
    """The facts MODEL.md shows, as plain data (also kept in model.json)."""
    config = ckpt["asr"].get("config") or {}
    data = config.get("data") or {}
    train = data.get("train") or []
    train = [train] if isinstance(train, str) else list(train)
    return {
        "source_checkpoint": checkpoint.name,
        "architecture": architecture(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "manifests": train,
            **training_hours(train),
            "steps": ckpt.get("global_step"),
            "epochs": ckpt.get("epoch", -1) + 1 if "epoch" in ckpt else None,
            "averaged_from": ckpt["asr"].get("averaged"),
        },
        "license": data.get("license"),
        "evaluations": evaluations(checkpoint),
        "config": config,
        "export": {
            "torch": torch.__version__,
            "opset": OPSET,
            "max_logit_difference": fp32_error,
            "max_logit_difference_int8": int8_error,
        },
    }


def architecture(model) -> str:
    net = model.network
    merge = "directions summed" if net.lstm[0].merge == "sum" else "directions concatenated"
    subsample = "frame stacking" if net.subsample.__class__.__name__ == "StackSubsampling" else "2 convolutions"
    return (
        f"{model.frontend.log_mel.mel.n_mels}-bin log-mel, {subsample} x{net.subsample.factor} in time, "
        f"{len(net.lstm)} bidirectional LSTM layers of {net.lstm[0].fwd.hidden_size} units per direction "
        f"({merge}), CTC over {model.vocab_size} tokens"
    )


def training_hours(manifests: list[str]) -> dict:
    """Utterances and hours in the training manifests, counted once each (a manifest listed twice to
    weigh it up is still the same audio), when they are readable here; else nothing."""
    from asr.data.manifest import read_manifest

    total, utterances = 0.0, 0
    for name in dict.fromkeys(manifests):
        if not str(name).endswith(".jsonl"):  # a shards.json index: streamed, not counted here
            return {}
        try:
            rows = read_manifest(name)
        except ASRError:
            return {}
        utterances += len(rows)
        total += sum(float(r.get("duration", 0.0)) for r in rows)
    return {"utterances": utterances, "hours": round(total / 3600, 2)} if manifests else {}


def evaluations(checkpoint: Path) -> list[dict]:
    """Every `asr evaluate` report in the checkpoint's run folder (asr.runs) scored with these very weights."""
    run, sha, found = run_of(checkpoint), fingerprint(checkpoint), []
    for summary_path in reports(checkpoint):
        try:
            summary = json.loads(summary_path.read_text())
        except (ValueError, OSError):
            continue
        if summary.get("model", {}).get("sha256") == sha and summary.get("wer") is not None:
            found.append(
                {
                    "data": summary.get("data"),
                    "wer": summary["wer"],
                    "cer": summary["cer"],
                    "utterances": summary["utterances"],
                    "words": summary["words"],
                    "decoding": summary.get("decoding"),
                    "report": str(summary_path.parent.relative_to(run)),
                }
            )
    return found


def render_card(card: dict, out: Path, int8: bool) -> str:
    train, export = card["training"], card["export"]
    hours = (
        f"{train['hours']} h in {train['utterances']:,} utterances"
        if "hours" in train
        else "hours not counted: streamed shards, or manifests not readable where `asr export` ran"
    )
    lines = [
        f"# {out.name}",
        "",
        f"Exported from `{card['source_checkpoint']}` with `asr export`"
        f"{' --int8' if int8 else ''}. Run it with `asr transcribe --model {out.name} FILE...` or "
        f'`asr.load_model("{out.name}")`: numpy, soundfile, soxr and onnxruntime are all it needs.',
        "",
        "## Model",
        "",
        f"- {card['architecture']}",
        f"- {card['parameters']:,} parameters; input 16 kHz mono audio",
        "",
        "## Training data",
        "",
        f"- manifests: {', '.join(f'`{m}`' for m in train['manifests']) or 'not recorded'}",
        f"- {hours}",
        f"- {train['steps']:,} optimizer steps, saved in epoch {train['epochs']}"
        if train.get("steps")
        else "- steps: not recorded in this checkpoint",
        f"- licence of the data: {card['license'] or 'not stated (set data.license in the training config)'}",
    ]
    if train.get("averaged_from"):
        lines.append(f"- weights averaged over {len(train['averaged_from'])} checkpoints")
    lines += ["", "## Word error rate", ""]
    if card["evaluations"]:
        lines += ["| data | decoding | WER | CER | utterances |", "|---|---|---|---|---|"]
        for e in card["evaluations"]:
            d = e.get("decoding") or {}
            how = "beam + LM" if d.get("lm") else ("beam" if d.get("decoder") == "beam" else "greedy")
            lines.append(f"| {e['data']} | {how} | {100 * e['wer']:.2f}% | {100 * e['cer']:.2f}% | {e['utterances']} |")
        lines += ["", "Scored by `asr evaluate` on the checkpoint (PyTorch) after text normalisation (README)."]
    else:
        lines.append("No `asr evaluate` report of this checkpoint was found in its run folder.")
    lines += [
        "",
        "## Export",
        "",
        f"- ONNX opset {export['opset']}, exported with torch {export['torch']}",
        f"- largest logit difference from PyTorch on a check batch: {export['max_logit_difference']:.1e} (float32)",
    ]
    if export["max_logit_difference_int8"] is not None:
        lines.append(
            f"- weights quantised to int8 (dynamic): largest logit difference {export['max_logit_difference_int8']:.2f}"
        )
    lines += ["", "The full training config is in model.json (`card.config`).", ""]
    return "\n".join(lines)
