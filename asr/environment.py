"""Can this Python environment run asr? Each native piece is tried for real, and a broken one is named in
one line (with the versions and the fix) instead of a shared-library traceback from deep inside a command."""

import tempfile
from importlib import metadata
from pathlib import Path

from asr.errors import ASRError


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def pinned(*dists: str) -> str:
    """The requirements this package was installed with for `dists`, e.g. '"torch<2.16,>=2.13" "torchaudio==2.11.1"'
    (pyproject.toml is the one place they are written)."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("asr") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "the torch and torchaudio that pyproject.toml names"
    wanted = [Requirement(r) for r in requires]  # torch and torchaudio come with the "train" extra
    return " ".join(
        f'"{r.name}{r.specifier}"'
        for r in wanted
        if r.name in dists and (not r.marker or r.marker.evaluate({"extra": "train"}))
    )


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def check_torchaudio() -> None:
    """Raise ASRError in one line if torchaudio cannot load beside the installed torch: its native library is
    built against one torch ABI (torchaudio 2.11.1 beside torch 2.11.0 fails with an undefined symbol)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ASRError(
            'PyTorch is not installed: training, checkpoints and export need pip install "asr[train]" '
            "(a model exported with `asr export` runs without it)"
        )
    try:
        import torchaudio  # noqa: F401  (loads libtorchaudio)
    except Exception as e:  # OSError: undefined symbol; ImportError; RuntimeError: CUDA major mismatch
        raise ASRError(
            f"torchaudio {version('torchaudio')} does not work with torch {version('torch')} "
            f"({first_line(e)}); install a pair that does: pip install --force-reinstall "
            f"{pinned('torch', 'torchaudio')} (PyPI's build of torch, not a +cpu one), or `make install` "
            "in a fresh venv (requirements.lock)"
        ) from None


def _torchaudio() -> str:
    check_torchaudio()
    import torch
    from torchaudio.transforms import MelSpectrogram

    assert MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=80)(torch.zeros(16000)).shape == (80, 101)
    return (
        f"torch {version('torch')} + torchaudio {version('torchaudio')}: MelSpectrogram "
        f"(CPU {torch.backends.cpu.get_cpu_capability()})"
    )


def _flashlight() -> str:
    import numpy as np

    from asr.decoding import BeamSearch
    from asr.text import CharTokenizer

    tokenizer = CharTokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "lm.arpa"  # a bigram LM (KenLM's least) that the decoder must read
        arpa.write_text(
            "\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n-1.0\t</s>\n-1.0\t<unk>\n"
            "-0.5\tAB\t-0.3\n\n\\2-grams:\n-0.2\t<s> AB\n-0.2\tAB </s>\n\n\\end\\\n"
        )
        ids = [i for token in tokenizer.encode("AB") for i in (token, 0)]  # a, blank, b, blank
        logits = np.full((len(ids), tokenizer.vocab_size), -5.0, np.float32)
        logits[np.arange(len(ids)), ids] = 5.0
        text = BeamSearch(tokenizer, beam_size=4, lm=str(arpa))(logits).text
    if text != "AB":
        raise RuntimeError(f"beam search with a KenLM model decoded {text!r}, expected 'AB'")
    return f"flashlight-text {version('flashlight-text')}: beam search with a KenLM ARPA model"


def _onnxruntime() -> str:
    import onnxruntime

    return (
        f"onnxruntime {onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())}): exported models"
    )


def _soxr() -> str:
    import numpy as np
    import soxr

    assert len(soxr.resample(np.zeros(4410, dtype="float32"), 44100, 16000)) == 1600
    return f"soxr {version('soxr')}: resampling to 16 kHz"


def _sentencepiece() -> str:
    import sentencepiece

    sentencepiece.SentencePieceProcessor()
    return f"sentencepiece {version('sentencepiece')}"


def _soundfile() -> str:
    import io

    import numpy as np
    import soundfile

    if "OPUS" not in soundfile.available_subtypes("OGG"):
        raise RuntimeError(f"libsndfile {soundfile.__libsndfile_version__} cannot read Ogg/Opus")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(4800, dtype="float32"), 48000, format="OGG", subtype="OPUS")
    buffer.seek(0)
    assert len(soundfile.read(buffer)[0]) > 0
    return f"soundfile {version('soundfile')} (libsndfile {soundfile.__libsndfile_version__}): FLAC, WAV, Ogg/Opus"


def _librosa() -> str:
    import librosa
    import numpy as np

    assert len(librosa.resample(np.zeros(4410, dtype="float32"), orig_sr=44100, target_sr=16000)) == 1600
    return f"librosa {version('librosa')}: formats libsndfile lacks (m4a, webm...)"


def _espeak() -> str:
    from asr.data.espeak import espeak_lib, phonemes

    espeak_lib()[0].espeak_SetVoiceByName(b"en-us")
    if not phonemes("hello"):
        raise RuntimeError("espeak-ng gave no phonemes for 'hello'")
    return f"espeak-ng (espeakng-loader {version('espeakng-loader')}): the synthetic corpus"


def _pyroomacoustics() -> str:
    import pyroomacoustics as pra

    room = pra.ShoeBox([4, 3, 2.5], fs=16000, materials=pra.Material(0.3), max_order=3)
    room.add_source([1, 1, 1])
    room.add_microphone([2, 2, 1.5])
    room.compute_rir()
    assert len(room.rir[0][0]) > 0
    return f"pyroomacoustics {version('pyroomacoustics')}: simulated rooms for training (features.reverb)"


CHECKS = {
    "torchaudio": _torchaudio,
    "flashlight-text": _flashlight,
    "onnxruntime": _onnxruntime,
    "sentencepiece": _sentencepiece,
    "soundfile": _soundfile,
    "soxr": _soxr,
    "librosa": _librosa,
    "espeak-ng": _espeak,
    "pyroomacoustics": _pyroomacoustics,
}
TRAIN_ONLY = {"torchaudio", "librosa", "espeak-ng", "pyroomacoustics"}  # pieces of `pip install "asr[train]"`


def check_environment(report=print) -> None:
    """Try every native piece asr uses, calling `report` with one line for each that works, as it goes.
    Raise ASRError, in one line naming every broken piece, if any fails. Without PyTorch (the runtime
    install) only the runtime's pieces are tried."""
    import importlib.util

    runtime_only = importlib.util.find_spec("torch") is None
    if runtime_only:
        report('runtime install (no PyTorch): exported models only; pip install "asr[train]" for the rest')
    broken = []
    for name, check in CHECKS.items():
        if runtime_only and name in TRAIN_ONLY:
            continue
        try:
            report(check())
        except ASRError as e:
            broken.append(str(e))
        except Exception as e:  # noqa: BLE001  whatever a native library raises is the finding
            broken.append(f"{name} {version(name)}: {first_line(e)}")
    if broken:
        raise ASRError("broken environment: " + "; ".join(broken))
