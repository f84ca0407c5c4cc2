"""A broken install is named in one line: a torch/torchaudio mismatch by every command, every native piece
by `asr doctor` (which the test command runs first)."""

import os
import subprocess
import sys
from importlib import metadata

import pytest

from asr.cli import main

# What torchaudio 2.11.1 raises beside torch 2.11.0, whose ABI it was not built against.
BROKEN_TORCHAUDIO = (
    'raise OSError("Could not load this library: /venv/torchaudio/lib/libtorchaudio.so '
    '(undefined symbol: torch_exception_get_what_without_backtrace)")\n'
)


@pytest.fixture
def mismatched_torchaudio(tmp_path):
    fake = tmp_path / "fake" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(BROKEN_TORCHAUDIO)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}


def test_every_command_names_a_torch_torchaudio_mismatch_in_one_line(mismatched_torchaudio, tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"checked only after torch loads")
    for argv in (
        ["transcribe", "--checkpoint", str(tmp_path / "x.ckpt"), "clip.flac"],
        ["synth", "--out", str(tmp_path / "s")],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "asr.cli", *argv],
            env=mismatched_torchaudio,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 1 and out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(
            f"error: torchaudio {metadata.version('torchaudio')} does not work with "
            f"torch {metadata.version('torch')} (OSError: Could not load this library"
        )
        assert 'pip install --force-reinstall "torch' in lines[0] and '"torchaudio==' in lines[0]


def test_doctor_still_tries_every_other_piece_beside_a_broken_torchaudio(mismatched_torchaudio):
    out = subprocess.run(
        [sys.executable, "-m", "asr.cli", "doctor"],
        env=mismatched_torchaudio,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "ok  sentencepiece" in out.stdout and "ok  soundfile" in out.stdout and "ok  espeak-ng" in out.stdout
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: broken environment: torchaudio ") and "does not work with torch" in error


def test_the_python_api_raises_the_same_one_line_error(mismatched_torchaudio):
    code = "import sys, asr\ntry:\n    asr.load_model(sys.executable)\n"
    code += "except asr.ASRError as e:\n    print('ASRError', e)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], env=mismatched_torchaudio, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.startswith("ASRError torchaudio ") and "does not work with torch" in out.stdout, out.stderr


def test_doctor_tries_every_native_piece(capsys):
    main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [
        "torch",
        "flashlight-text",
        "onnxruntime",
        "sentencepiece",
        "soundfile",
        "soxr",
        "librosa",
        "espeak-ng",
        "pyroomacoustics",
    ]
    assert all(line.startswith("ok  ") for line in lines)


def test_doctor_names_a_broken_piece_in_one_line_and_fails(monkeypatch, capsys):
    import soundfile

    monkeypatch.setattr(soundfile, "available_subtypes", lambda fmt=None: {"PCM_16": "Signed 16 bit PCM"})
    with pytest.raises(SystemExit) as exit_info:
        main(["doctor"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: broken environment: soundfile ") and "cannot read Ogg/Opus" in err[-1]
