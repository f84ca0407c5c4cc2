"""Checkpoints: loaded safely (tensors and plain data only, never code: torch.load weights_only), with
one format version checked here, and turned into the inference model without any training code.

A checkpoint is the dict `asr train` writes (through Lightning): "state_dict" (the model's weights,
under "model."), and "asr": {"format", "dims" (asr.dims.ModelDims as plain data), "tokenizer", "config"}.
Training state (optimizer, schedule, loops, random generators) rides along for resuming."""

import os
import re
import zipfile
from pathlib import Path

import torch

from asr.dims import with_dims
from asr.errors import ASRError, file_error

FORMAT_VERSION = 3  # raised whenever a checkpoint of the old layout would load wrongly


UPGRADABLE = (2,)  # older formats read as the current one: 2 held the same fields as "model_args"


def read_checkpoint(path) -> dict:
    """torch.load with weights_only=True: tensors and plain data, never code. Every use of a
    checkpoint (transcribe, evaluate, fine-tuning, train --resume) reads it through here first."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refuses anything but tensors and plain data
        raise file_error(path, _load_problem(path, e)) from None
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("asr"), dict)
        or not isinstance(ckpt.get("state_dict"), dict)
    ):
        raise file_error(path, "not an asr checkpoint (no model description inside)")
    version = ckpt["asr"].get("format")
    if version in UPGRADABLE:
        try:
            ckpt["asr"] = with_dims(ckpt["asr"], FORMAT_VERSION)
        except (KeyError, TypeError):
            raise file_error(path, f"checkpoint format {version} without its model description") from None
    elif version != FORMAT_VERSION:
        raise file_error(
            path,
            f"checkpoint format {version} is not one this version of asr reads "
            f"({', '.join(map(str, (*UPGRADABLE, FORMAT_VERSION)))}): use the asr release that wrote it, or retrain",
        )
    if not isinstance(ckpt["asr"].get("dims"), dict):
        raise file_error(path, "not an asr checkpoint (no model description inside)")
    return ckpt


def model_weights(state_dict: dict) -> dict:
    """The training module's state_dict -> the inference model's (its keys under "model.")."""
    return {k[len("model.") :]: v for k, v in state_dict.items() if k.startswith("model.")}


def load_model_and_tokenizer(path, device="cpu"):
    """A checkpoint written by `asr train` -> (ASRModel in eval mode on `device`, tokenizer, its "asr" dict)."""
    from asr.model import ASRModel, ModelDims
    from asr.text import tokenizer_from_dict

    path = Path(path)
    ckpt = read_checkpoint(path)
    info = ckpt["asr"]
    try:
        tokenizer = tokenizer_from_dict(info["tokenizer"])
        model = ASRModel(ModelDims.from_dict(info["dims"], "the model description"))
    except ASRError as e:
        raise file_error(path, f"incompatible checkpoint ({e})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise file_error(path, f"incompatible checkpoint ({type(e).__name__}: {e})") from None
    if model.vocab_size != tokenizer.vocab_size:
        raise file_error(
            path,
            f"tokenizer/vocabulary mismatch: the checkpoint's tokenizer has "
            f"{tokenizer.vocab_size} tokens but its weights output {model.vocab_size}",
        )
    try:
        model.load_state_dict(model_weights(ckpt["state_dict"]))
    except RuntimeError as e:  # missing, unexpected or misshapen tensors: say which
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise file_error(path, f"checkpoint weights do not match the model ({detail[:200]})") from None
    return model.to(device).eval(), tokenizer, info


def _load_problem(path: Path, e: Exception) -> str:
    """torch.load's failure -> one short line. Its own text is long and, for a file that holds code,
    advises loading it with weights_only=False: the very thing we must not suggest."""
    text = str(e)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)  # the weights-only unpickler met an import
    if blocked:
        return (
            f"refusing to load: the file would import {blocked.group(1)}, which can run code; "
            f"a checkpoint may hold only tensors and plain data"
        )
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; this is something else
        return "not a PyTorch checkpoint file"
    if "Weights only load failed" in text:
        return "refusing to load: the file holds objects other than tensors and plain data, which can run code"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"not a loadable checkpoint ({first[:200]})"


def write_checkpoint(path, model, tokenizer, config: dict | None = None) -> Path:
    """An inference checkpoint (weights and description, no training state) that load_model reads:
    for models made outside `asr train` (benchmarks, averaged weights)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    asr = {
        "format": FORMAT_VERSION,
        "dims": model.dims.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "config": config or {},
    }
    return save_atomically({"state_dict": state, "asr": asr}, path)


def save_atomically(checkpoint: dict, path) -> Path:
    """torch.save to NAME.tmp in the same folder, flushed to disk (fsync), then renamed over NAME (atomic
    on POSIX): a kill at any moment leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def average_checkpoints(paths, out) -> Path:
    """The element-wise mean of the weights of `paths` -> an inference checkpoint at `out`: checkpoint
    averaging (as ESPnet and icefall do), which evens out the last steps' noise. The checkpoints must hold
    one model and tokenizer (snapshots of one run); the model has no batch norm, so nothing needs re-estimating."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ASRError(f"averaging needs at least 2 checkpoints, got {len(paths)}")
    first = read_checkpoint(paths[0])
    info, sums = first["asr"], {k: v.double() for k, v in model_weights(first["state_dict"]).items()}
    for path in paths[1:]:
        ckpt = read_checkpoint(path)
        weights = model_weights(ckpt["state_dict"])
        same = all(ckpt["asr"].get(key) == info.get(key) for key in ("dims", "tokenizer"))
        if not same or weights.keys() != sums.keys() or any(weights[k].shape != sums[k].shape for k in sums):
            raise file_error(
                path, f"not the same model and tokenizer as {paths[0]}: only snapshots of one run can be averaged"
            )
        for k in sums:
            sums[k] += weights[k].double()
    like = model_weights(first["state_dict"])
    state = {f"model.{k}": (s / len(paths)).to(like[k].dtype) for k, s in sums.items()}
    return save_atomically({"state_dict": state, "asr": {**info, "averaged": [str(p) for p in paths]}}, out)
