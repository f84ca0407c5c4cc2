"""speechocean762: download over a dropped connection from 127.0.0.1, extraction, the three manifests;
the shared copy; a tiny training run on real utterances."""

import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
from conftest import shared_data

from asr.data import speechocean
from asr.data.manifest import read_manifest
from asr.errors import ASRError

# speaker -> age: two children and two adults in train, one of each in test
TRAIN = {"0001": 7, "0002": 10, "1001": 25, "1002": 30}
TEST = {"0003": 8, "1003": 22}


def _half(corpus, half, speakers, per_speaker=2):
    folder = corpus / half
    folder.mkdir(parents=True)
    scp, text, utt2spk = [], [], []
    for k, speaker in enumerate(speakers):
        for j in range(per_speaker):
            utt = f"{speaker}{half[:2]}{j}"
            wav = corpus / "WAVE" / f"SPEAKER{speaker}" / f"{utt}.WAV"
            wav.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(8000 + 800 * j) / 16000
            sf.write(wav, (0.2 * np.sin(2 * np.pi * (150 + 20 * k) * t)).astype(np.float32), 16000)
            scp.append(f"{utt}\tWAVE/SPEAKER{speaker}/{utt}.WAV")
            text.append(f"{utt}\tWORD NUMBER {j}")
            utt2spk.append(f"{utt}\t{speaker}")
    (folder / "wav.scp").write_text("\n".join(scp) + "\n")
    (folder / "text").write_text("\n".join(text) + "\n")
    (folder / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    (folder / "spk2age").write_text("".join(f"{s}\t{a}\n" for s, a in speakers.items()))
    (folder / "spk2gender").write_text("".join(f"{s}\t{'mf'[i % 2]}\n" for i, s in enumerate(speakers)))


def make_corpus(folder):
    _half(folder, "train", TRAIN)
    _half(folder, "test", TEST, per_speaker=4)  # 8 utterances in each half
    (folder / "README.md").write_text("tiny stand-in\n")
    return folder


def make_archive(tmp_path):
    make_corpus(tmp_path / "src" / "speechocean762")
    archive = tmp_path / "speechocean762.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "speechocean762", arcname="speechocean762")
    return archive.read_bytes()


def test_download_resumes_extracts_and_writes_three_manifests(server, tmp_path, monkeypatch):
    monkeypatch.setattr(speechocean, "UTTERANCES", 8)  # per half in the stand-in corpus
    server["files"]["/res/speechocean762.tar.gz"] = make_archive(tmp_path)
    server["cut_first"] = True  # the first response stops half way: the download must resume
    root, out = tmp_path / "root", tmp_path / "manifests"
    manifests = speechocean.prepare_speechocean762(
        root, download=True, out_dir=out, n_dev_speakers=2, base_url=server["url"] + "/res", log=lambda _: None
    )
    assert len(server["requests"]) == 2 and server["requests"][1][1].startswith("bytes=")
    assert sorted(p.name for p in root.iterdir()) == ["speechocean762", "speechocean762.tar.gz"]
    rows = {name: read_manifest(path) for name, path in manifests.items()}
    assert {r["speaker"] for r in rows["dev"]} == {"0001", "1001"}  # one child, one adult
    assert {r["speaker"] for r in rows["train"]} == {"0002", "1002"}
    assert {r["speaker"] for r in rows["test"]} == set(TEST)
    row = rows["test"][0]
    assert (row["age"], row["age_group"], row["text"]) == (8, "child", "WORD NUMBER 0")
    assert {r["age_group"] for r in rows["test"]} == {"child", "adult"}
    assert all(r["duration"] > 0 and r["gender"] in "mf" for rs in rows.values() for r in rs)
    # Already there: a second run reads it without the network.
    speechocean.prepare_speechocean762(
        root, download=True, out_dir=out, n_dev_speakers=2, base_url=server["url"] + "/res", log=lambda _: None
    )
    assert len(server["requests"]) == 2


def test_an_archive_that_is_not_the_corpus_is_refused(server, tmp_path, monkeypatch):
    monkeypatch.setattr(speechocean, "UTTERANCES", 2500)
    server["files"]["/speechocean762.tar.gz"] = make_archive(tmp_path)
    root = tmp_path / "root"
    with pytest.raises(ASRError, match="train/wav.scp lists 8 utterances, not 2500"):
        speechocean.prepare_speechocean762(
            root, download=True, out_dir=tmp_path / "m", base_url=server["url"], log=lambda _: None
        )
    assert not (root / "speechocean762").exists()  # nothing that looks finished is left behind


def test_extracted_copy_without_download(tmp_path, run_cli):
    corpus = make_corpus(tmp_path / "copy")
    code, out, err = run_cli(
        "prepare", "speechocean762", "--root", corpus, "--out", tmp_path / "m", "--dev-speakers", "2"
    )
    assert code == 0, err
    assert [line.split("\t")[0] for line in out.splitlines() if "\t" in line] == ["train", "dev", "test"]
    code, _, err = run_cli("prepare", "speechocean762", "--root", tmp_path / "nothing", "--out", tmp_path / "m")
    assert code == 1 and "pass --download" in err and err.count("\n") == 1


def test_shared_copy_gives_the_official_halves(tmp_path):
    corpus = shared_data("speechocean762")
    manifests = speechocean.prepare_speechocean762(corpus, out_dir=tmp_path, log=lambda _: None)
    rows = {name: read_manifest(path) for name, path in manifests.items()}
    assert (len(rows["train"]), len(rows["dev"]), len(rows["test"])) == (2300, 200, 2500)
    speakers = {name: {r["speaker"] for r in rs} for name, rs in rows.items()}
    assert len(speakers["dev"]) == 10 and len(speakers["test"]) == 125
    assert not speakers["train"] & speakers["dev"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert {r["age_group"] for r in rows["dev"] if r["speaker"] in speakers["dev"]} == {"child", "adult"}


def test_tiny_training_run_on_real_utterances(tmp_path, run_cli):
    """A few steps on 24 shared utterances, then evaluate --by age_group: the path runs on real speech."""
    corpus = shared_data("speechocean762")
    manifests = speechocean.prepare_speechocean762(corpus, out_dir=tmp_path / "m", log=lambda _: None)
    rows = [json.loads(line) for line in manifests["train"].read_text().splitlines()]
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in rows[::96][:24]))
    code, out, err = run_cli(
        "train",
        "--config",
        "configs/speechocean762.yaml",
        f"out_dir={tmp_path / 'run'}",
        f"data.train={small}",
        f"data.val={small}",
        "init_from=null",
        "tokenizer.kind=char",
        "model.hidden=64",
        "model.layers=2",
        "model.char_ctc_layer=0",
        "trainer.max_epochs=2",
        "trainer.max_time=null",
        "trainer.val_check_interval=1.0",
        "trainer.enable_progress_bar=false",
    )
    assert code == 0, err
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    code, out, err = run_cli(
        "evaluate", "--checkpoint", ckpt, "--data", small, "--out", tmp_path / "eval", "--by", "age_group"
    )
    assert code == 0, err
    assert out.startswith("WER ") and "age_group" in out
