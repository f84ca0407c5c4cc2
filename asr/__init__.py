"""CTC speech recognition with a bidirectional LSTM.

Python API:
    from asr import Recognizer
    rec = Recognizer("runs/demo/checkpoints/best.ckpt")
    result = rec.transcribe("clip.flac")        # or a mono 16 kHz float32 numpy array
    result.text                                 # "HELLO WORLD"
    result.words                                # [Word("HELLO", start=0.12, end=0.48, confidence=0.97), ...]
"""
from asr.errors import ASRError

__all__ = ["ASRError", "Recognizer", "load_audio"]


def __getattr__(name):  # import torch-heavy modules only when used
    if name == "Recognizer":
        from asr.environment import check_torchaudio

        check_torchaudio()  # a torch/torchaudio mismatch raises ASRError in one line
        from asr.transcribe import Recognizer

        return Recognizer
    if name == "load_audio":
        from asr.audio import load_audio

        return load_audio
    raise AttributeError(name)
