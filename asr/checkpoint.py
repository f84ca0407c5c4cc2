"""Loading checkpoints safely: tensors and plain data only, never code (torch.load weights_only)."""
from pathlib import Path

import torch

from asr.errors import file_error


def load_module(path, device="cpu"):
    """A Lightning checkpoint written by `asr train` -> CTCModule in eval mode on `device`."""
    from asr.lightning import CTCModule

    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refuses anything but tensors and plain data
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise file_error(path, f"not a loadable checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "asr" not in ckpt or "state_dict" not in ckpt:
        raise file_error(path, "not an asr checkpoint (no model config inside)")
    try:
        module = CTCModule.from_asr_dict(ckpt["asr"])
    except (KeyError, TypeError, ValueError) as e:
        raise file_error(path, f"incompatible checkpoint config ({e})") from None
    try:
        result = module.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:  # shape mismatch: say which tensor
        detail = next((l.strip() for l in str(e).splitlines() if "size mismatch" in l), str(e).splitlines()[0])
        raise file_error(path, f"checkpoint weights do not match the model ({detail[:200]})") from None
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise file_error(path, f"checkpoint weights do not match the model ({', '.join(problems[:3])})")
    return module.to(device).eval()
