"""CTC speech recognition with a bidirectional LSTM.

    import asr
    model = asr.load_model("runs/demo/checkpoints/best.ckpt")   # or an `asr export` folder (no torch needed)
    result = model.transcribe("clip.flac")            # or a 1-D NumPy array / torch tensor (sample_rate=...)
    result.text                                       # "HELLO WORLD"
    result.words                                      # [Word("HELLO", start=0.12, end=0.48, confidence=0.97), ...]
    model.transcribe("clip.flac", decoder="beam", lm="lm.arpa", lm_weight=0.5)
    model.transcribe_many(["a.flac", "b.wav"])        # a file that fails has result.error; the rest go on

Every error meant for users is an `asr.ASRError` with a one-line message naming the file and the problem.
"""

from asr.errors import ASRError

__all__ = ["ASRError", "DecodingOptions", "Model", "Result", "Word", "load_audio", "load_model"]


def __getattr__(name):  # torch is imported on first use, so `import asr` stays instant
    if name in ("load_model", "Model", "Result"):  # torch loads only for a checkpoint
        import asr.transcribe

        return getattr(asr.transcribe, name)
    if name == "DecodingOptions":
        from asr.decoding import DecodingOptions

        return DecodingOptions
    if name == "Word":
        from asr.decoding import Word

        return Word
    if name == "load_audio":
        from asr.audio import load_audio

        return load_audio
    raise AttributeError(name)
