"""The network behind `asr.load_model`: a training checkpoint run by PyTorch, or an exported folder
(`asr export`) run by onnxruntime. Both are called the same way, on NumPy arrays:

    logits, lengths = network(audio, audio_lens)   # (B, S) float32 at 16 kHz, (B,) int64
                                                   # -> (B, T', V) float32, (B,) int64

so windowing, batching and decoding (asr.transcribe) are one code path for both. Loading an exported
folder imports neither torch nor any training code: it runs where only numpy, soundfile, soxr and
onnxruntime are installed (`pip install asr`, without the "train" extra).
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from asr.dims import with_dims
from asr.errors import ASRError, file_error
from asr.text import tokenizer_from_dict

EXPORT_FORMAT = 2  # model.json's layout; raised whenever an older runtime would misread a newer folder
# Format 1 differs only in how it held the model description ("model_args"), which running needs not.
READABLE_FORMATS = (1, EXPORT_FORMAT)
ONNX_FILE, INFO_FILE = "model.onnx", "model.json"


def load_network(path, device: str = "auto"):
    """A checkpoint file or an exported folder -> (network, tokenizer, info dict)."""
    path = Path(path)
    if path.is_dir():
        return load_exported(path, device)
    if not path.exists():
        raise file_error(path, "checkpoint not found (nor a folder written by `asr export`)")
    return load_checkpoint(path, device)


def load_checkpoint(path: Path, device: str = "auto"):
    """A checkpoint written by `asr train` -> (TorchNetwork, tokenizer, the checkpoint's "asr" dict)."""
    from asr.environment import check_torchaudio

    check_torchaudio()  # a torch/torchaudio mismatch raises ASRError in one line
    import torch

    from asr.checkpoint import load_model_and_tokenizer

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model, tokenizer, info = load_model_and_tokenizer(path, device)
    return TorchNetwork(model, device), tokenizer, info


def load_exported(folder: Path, device: str = "auto"):
    """A folder written by `asr export` -> (OnnxNetwork, tokenizer, model.json's contents)."""
    info_path, onnx_path = folder / INFO_FILE, folder / ONNX_FILE
    if not info_path.is_file() or not onnx_path.is_file():
        raise file_error(folder, f"not an exported model: expected {INFO_FILE} and {ONNX_FILE} inside (asr export)")
    try:
        info = json.loads(info_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise file_error(info_path, f"not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") not in READABLE_FORMATS:
        raise file_error(
            info_path,
            f"export format {info.get('format') if isinstance(info, dict) else None} is not "
            f"one this version of asr reads ({', '.join(map(str, READABLE_FORMATS))}): "
            f"export the model again",
        )
    try:
        if info["format"] == 1:  # the same fields, held as "model_args"
            info = with_dims(info, EXPORT_FORMAT)
        tokenizer = tokenizer_from_dict(info["tokenizer"])
        # Dynamically quantised ops run on the CPU only: an int8 model stays there unless told otherwise.
        network = OnnxNetwork(
            onnx_path, info["frame_samples"], "cpu" if device == "auto" and info.get("weights") == "int8" else device
        )
    except (KeyError, TypeError, ValueError) as e:
        raise file_error(info_path, f"incomplete model description ({type(e).__name__}: {e})") from None
    return network, tokenizer, info


def fingerprint(path) -> str:
    """sha256 of a checkpoint file, or of an exported folder's model.onnx: which weights a score belongs to."""
    path = Path(path)
    path = path / ONNX_FILE if path.is_dir() else path
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TorchNetwork:
    """An asr.model.ASRModel (eval mode) on `device`, called on NumPy arrays."""

    def __init__(self, model, device: str = "cpu"):
        self.model, self.device = model, device
        self.frame_samples = model.frame_samples  # audio samples per output frame

    def __call__(self, audio: np.ndarray, audio_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            logits, lengths = self.model(
                torch.from_numpy(audio).to(self.device), torch.from_numpy(audio_lens).to(self.device)
            )
        return logits.float().cpu().numpy(), lengths.cpu().numpy()


class OnnxNetwork:
    """An exported model.onnx (front end included: waveforms in, logits out) in an onnxruntime session.

    `threads`: onnxruntime's intra-op threads (default: one per physical core). device "cuda" or "cuda:N"
    needs onnxruntime's CUDA provider (onnxruntime-gpu, installed instead of onnxruntime); "auto" uses it
    when it is there."""

    def __init__(self, path, frame_samples: int, device: str = "auto", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ASRError("running an exported model needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its shape-inference notes are not the user's business
        if threads:
            options.intra_op_num_threads = threads
        available, wants_cuda = ort.get_available_providers(), device.startswith("cuda")
        if wants_cuda and "CUDAExecutionProvider" not in available:
            raise ASRError(
                f"device {device}: this onnxruntime has no CUDA provider ({', '.join(available)}); "
                f"pip uninstall onnxruntime, then pip install onnxruntime-gpu"
            )
        providers = ["CPUExecutionProvider"]
        if (wants_cuda or device == "auto") and "CUDAExecutionProvider" in available:
            # HEURISTIC: every new audio length is a new convolution shape, which EXHAUSTIVE would time anew
            cuda = {"device_id": int(device.partition(":")[2] or 0), "cudnn_conv_algo_search": "HEURISTIC"}
            providers.insert(0, ("CUDAExecutionProvider", cuda))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for a damaged file
            raise file_error(path, f"not a loadable ONNX model ({str(e).strip().splitlines()[0][:200]})") from None
        self.frame_samples = int(frame_samples)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        if wants_cuda and self.device != "cuda":  # listed, but its CUDA or cuDNN libraries did not load
            raise ASRError(
                f"device {device}: onnxruntime's CUDA provider did not load (CUDA/cuDNN libraries "
                f"missing?); use device cpu"
            )

    def __call__(self, audio: np.ndarray, audio_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, lengths = self.session.run(
            None, {"audio": np.ascontiguousarray(audio, np.float32), "audio_lens": np.asarray(audio_lens, np.int64)}
        )
        return logits, lengths
