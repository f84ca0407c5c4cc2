"""Checkpoints: loaded safely (tensors and plain data only, never code: torch.load weights_only) and
written atomically (a crash mid-write never leaves a half-written file where a good one was)."""
import os
import re
import zipfile
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from asr.errors import file_error


def read_checkpoint(path) -> dict:
    """torch.load with weights_only=True: tensors and plain data, never code. Every use of a
    checkpoint (transcribe, evaluate, train --resume) reads it through here first."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refuses anything but tensors and plain data
        raise file_error(path, _load_problem(path, e)) from None
    if not isinstance(ckpt, dict) or "asr" not in ckpt or "state_dict" not in ckpt:
        raise file_error(path, "not an asr checkpoint (no model config inside)")
    return ckpt


def load_module(path, device="cpu"):
    """A Lightning checkpoint written by `asr train` -> CTCModule in eval mode on `device`."""
    from asr.lightning import CTCModule

    path = Path(path)
    ckpt = read_checkpoint(path)
    try:
        module = CTCModule.from_asr_dict(ckpt["asr"])
    except (KeyError, TypeError, ValueError) as e:
        raise file_error(path, f"incompatible checkpoint config ({e})") from None
    proj = ckpt["state_dict"].get("model.proj.weight") if isinstance(ckpt["state_dict"], dict) else None
    if isinstance(proj, torch.Tensor) and proj.shape[0] != module.tokenizer.vocab_size:
        raise file_error(path, f"tokenizer/vocabulary mismatch: the checkpoint's tokenizer has "
                               f"{module.tokenizer.vocab_size} tokens but its weights output {proj.shape[0]}")
    try:
        result = module.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:  # shape mismatch: say which tensor
        detail = next((l.strip() for l in str(e).splitlines() if "size mismatch" in l), str(e).splitlines()[0])
        raise file_error(path, f"checkpoint weights do not match the model ({detail[:200]})") from None
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise file_error(path, f"checkpoint weights do not match the model ({', '.join(problems[:3])})")
    return module.to(device).eval()


def _load_problem(path: Path, e: Exception) -> str:
    """torch.load's failure -> one short line. Its own text is long and, for a file that holds code,
    advises loading it with weights_only=False: the very thing we must not suggest."""
    text = str(e)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)  # the weights-only unpickler met an import
    if blocked:
        return (f"refusing to load: the file would import {blocked.group(1)}, which can run code; "
                f"a checkpoint may hold only tensors and plain data")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; this is something else
        return "not a PyTorch checkpoint file"
    if "Weights only load failed" in text:
        return "refusing to load: the file holds objects other than tensors and plain data, which can run code"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"not a loadable checkpoint ({first[:200]})"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made crash-safe: the checkpoint goes to NAME.tmp in the same
    folder, is flushed to disk (fsync), and only then renamed over NAME (atomic on POSIX). A kill at
    any moment leaves either the old checkpoint or the new one, never a torn file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
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
