"""CTC speech recognition with a bidirectional LSTM.

Python API:
    from asr import Recognizer
    rec = Recognizer("runs/demo/checkpoints/best.ckpt")
    rec.transcribe_file("clip.flac")            # -> "HELLO WORLD"
    rec.transcribe_arrays([waveform_16k_mono])  # numpy float32 arrays
"""
from asr.errors import ASRError

__all__ = ["ASRError", "Recognizer", "load_audio"]


def __getattr__(name):  # import torch-heavy modules only when used
    if name == "Recognizer":
        from asr.transcribe import Recognizer

        return Recognizer
    if name == "load_audio":
        from asr.audio import load_audio

        return load_audio
    raise AttributeError(name)
