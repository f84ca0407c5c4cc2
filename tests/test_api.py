"""The Python API: asr.load_model(path).transcribe(audio, **options), as a user calls it."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import asr
from asr.data.manifest import read_manifest


@pytest.fixture(scope="module")
def model(overfit_run):
    return asr.load_model(overfit_run[1], device="cpu")


@pytest.fixture(scope="module")
def clip(tiny_corpus):
    row = read_manifest(tiny_corpus[1]["train"])[0]
    return row["audio"], row["text"]


def test_a_path_an_array_and_a_tensor_give_the_same_text(model, clip):
    path, text = clip
    by_path = model.transcribe(path)
    assert by_path.text == text.upper() and by_path.words and by_path.duration > 0
    wave = asr.load_audio(path)
    assert model.transcribe(wave).text == by_path.text
    assert model.transcribe(torch.from_numpy(wave)).text == by_path.text
    import librosa

    at_44k = librosa.resample(wave, orig_sr=16000, target_sr=44100)  # resampled back to 16 kHz inside
    assert model.transcribe(at_44k, sample_rate=44100).text == by_path.text
    assert model.transcribe(at_44k).text != by_path.text  # taken as 16 kHz: 2.8x too slow
    assert model.transcribe(path, word_timestamps=False).words == []


def test_options_as_a_dataclass_or_keywords(model, clip, tmp_path):
    path, _ = clip
    options = asr.DecodingOptions(decoder="beam", beam_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.beam_size = 3  # frozen: options are values, shared safely
    assert model.transcribe(path, options).text == model.transcribe(path, decoder="beam", beam_size=8).text
    with pytest.raises(asr.ASRError, match="did you mean 'beam_size'"):
        model.transcribe(path, beamsize=8)
    with pytest.raises(asr.ASRError, match="needs decoder='beam'"):
        asr.DecodingOptions(decoder="greedy", lm="x.arpa")
    assert asr.DecodingOptions(lm="x.arpa").beam  # an LM alone means beam search
    from pathlib import Path

    from asr.decoding import decoding_options

    assert decoding_options(lm=Path("lm.arpa")).lm == "lm.arpa"  # a path object is as good as a string
    saved = tmp_path / "decoding.yaml"
    saved.write_text("decoder: beam\nbeam_size: 4\nlm_weight: 0.5\n")
    assert asr.DecodingOptions.load(saved) == asr.DecodingOptions(decoder="beam", beam_size=4, lm_weight=0.5)
    saved.write_text("decoder: beam\nbeem_size: 4\n")
    with pytest.raises(asr.ASRError, match="decoding.yaml: unknown key 'beem_size'"):
        asr.DecodingOptions.load(saved)


def test_decoding_options_save_and_load_round_trip_with_files_beside_them(tmp_path):
    (tmp_path / "lm.arpa").write_text("stand-in")
    options = asr.DecodingOptions(decoder="beam", beam_size=8, lm="lm.arpa", lm_weight=3e-4, word_score=-1.0)
    path = options.save(tmp_path / "decoding.yaml", "tuned on dev\nsecond line")
    assert path.read_text().startswith("# tuned on dev\n# second line\n")
    loaded = asr.DecodingOptions.load(path)  # the LM is named relative to the settings: found beside them
    assert loaded == asr.DecodingOptions(
        decoder="beam", beam_size=8, lm=str(tmp_path / "lm.arpa"), lm_weight=3e-4, word_score=-1.0
    )


def test_bad_input_raises_one_clear_error(model, tmp_path):
    cases = [
        (np.zeros((2, 16000), dtype=np.float32), "expected 1-D mono samples, got shape \\(2, 16000\\)"),
        (np.zeros(16000, dtype=np.int16), "expected float samples"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros(100, dtype=np.float32), "too short"),
        ([0.0] * 16000, "expected a path, a NumPy array or a torch tensor, got list"),
        (tmp_path / "missing.wav", "missing.wav: audio file not found"),
    ]
    for audio, message in cases:
        with pytest.raises(asr.ASRError, match=message):
            model.transcribe(audio)


def test_transcribe_many_reports_a_bad_file_and_goes_on(model, clip, tmp_path):
    path, text = clip
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio")
    results = model.transcribe_many([path, broken, path])
    assert [r.text for r in results] == [text.upper(), "", text.upper()]
    assert "broken.wav" in results[1].error and not results[0].error and not results[2].error


def test_settings_beside_a_checkpoint_are_used_only_when_asked(overfit_run, clip, tmp_path, run_cli):
    import shutil

    path, _ = clip
    ckpt = tmp_path / "best.ckpt"
    shutil.copy(overfit_run[1], ckpt)
    (tmp_path / "decoding.yaml").write_text("decoder: beam\nlexicon: /nonexistent/lexicon.txt\n")
    code, out, err = run_cli("transcribe", "--checkpoint", ckpt, path)
    assert code == 0, err  # greedy: the file beside it was not read
    code, _, err = run_cli("transcribe", "--checkpoint", ckpt, "--decoding", tmp_path / "decoding.yaml", path)
    assert code == 1 and "lexicon.txt: lexicon not found" in err


def test_a_checkpoint_of_another_format_is_refused(overfit_run, tmp_path):
    ckpt = torch.load(overfit_run[1], map_location="cpu", weights_only=True)
    ckpt["asr"]["format"] = 1
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(asr.ASRError, match="old.ckpt: checkpoint format 1 is not one this version"):
        asr.load_model(old)


def test_loading_and_transcribing_import_no_training_code(overfit_run, clip):
    script = (
        f"import sys, asr\nm = asr.load_model({str(overfit_run[1])!r}, device='cpu')\n"
        f"print(m.transcribe({clip[0]!r}).text)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('pytorch_lightning', 'lightning_fabric', 'lightning') or k.startswith('asr.training'))\n"
        "print('imported:', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [clip[1].upper(), "imported: []"]


def test_tune_lm_scores_the_emissions_evaluate_decodes(model, clip, tmp_path, monkeypatch):
    """A file longer than one window: evaluate decodes windowed emissions, and so must tune-lm."""
    import asr.decoding
    from asr.evaluate import tune_lm
    from asr.transcribe import LONG_S

    wave = asr.load_audio(clip[0])
    long_wave = np.tile(wave, int(LONG_S * 16000 / len(wave)) + 2)
    long_file = tmp_path / "long.wav"
    sf.write(long_file, long_wave, 16000)
    seen = []

    class Recording:  # stands in for the beam search: keeps what it is given
        def __init__(self, *args, **kwargs):
            pass

        def with_weights(self, *args):
            return self

        def __call__(self, logits):
            seen.append(logits)
            return asr.decoding.greedy(logits, model.tokenizer)

    monkeypatch.setattr(asr.decoding, "BeamSearch", Recording)
    tune_lm(
        model,
        [{"audio": str(long_file), "text": clip[1]}],
        lm=None,
        lm_weights=(1.0,),
        word_scores=(0.0,),
        log=lambda *a: None,
    )
    windowed = model.long_file_emissions(long_file)
    whole = model.emissions([long_wave.astype(np.float32)])[0]
    assert len(seen) == 1 and np.array_equal(seen[0], windowed)
    assert seen[0].shape == whole.shape and not np.allclose(seen[0], whole)  # the windows are what differ
