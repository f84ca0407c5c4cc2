"""WordNet's usage examples as real sentences: fetched from 127.0.0.1, verified, read without extraction."""

import hashlib
import io
import tarfile

import pytest

from asr.data import wordnet
from asr.data.sentences import read_sentences
from asr.errors import ASRError

LINES = {
    "data.noun": [
        '00001740 03 n 01 entity 0 | that which is perceived; "the cork bobbed around in the pool"; '
        "\"he had writer's block; the words wouldn't come\"",
        "  1 This software and database is being provided to you, the LICENSEE ... (header line)",
    ],
    "data.verb": ['00001740 29 v 04 breathe 0 | draw air into the lungs; "She breathes deeply every morning!"'],
    "data.adj": ['00001740 00 a 01 able 0 | having the means; "able to swim"; "she was able to program her computer"'],
    "data.adv": ['00001740 02 r 01 very 0 | to a high degree; "a very hot day"'],
}


def _archive(tmp_path, files=LINES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, lines in {**files, "LICENSE": ["WordNet Release 3.0 ... Princeton University"]}.items():
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(wordnet.DATA + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_examples_are_fetched_resumed_verified_and_written_as_sentences(server, tmp_path):
    data = _archive(tmp_path)
    server["files"]["/wn.tar.gz"] = data
    server["cut_first"] = True  # the first response stops half way: the download resumes
    text = wordnet.wordnet_examples(
        tmp_path / "text", url=server["url"] + "/wn.tar.gz", md5=hashlib.md5(data).hexdigest(), log=lambda _: None
    )
    assert text.read_text().splitlines() == [
        "The cork bobbed around in the pool.",
        "He had writer's block; the words wouldn't come.",
        "She breathes deeply every morning!",
        "Able to swim.",
        "She was able to program her computer.",
        "A very hot day.",
    ]
    assert "Princeton" in (tmp_path / "text" / "WORDNET-LICENSE").read_text()
    assert [s.text for s in read_sentences(text)][:2] == [
        "THE CORK BOBBED AROUND IN THE POOL",
        "HE HAD WRITER'S BLOCK THE WORDS WOULDN'T COME",
    ]
    requests = len(server["requests"])
    wordnet.wordnet_examples(tmp_path / "text", url=server["url"] + "/wn.tar.gz", log=lambda _: None)
    assert len(server["requests"]) == requests  # written once: a second call reads nothing


def test_a_wrong_or_foreign_archive_is_refused_in_one_line(server, tmp_path):
    server["files"]["/wn.tar.gz"] = _archive(tmp_path)
    with pytest.raises(ASRError, match="MD5"):
        wordnet.wordnet_examples(tmp_path / "a", url=server["url"] + "/wn.tar.gz", md5="0" * 32, log=lambda _: None)
    other = _archive(tmp_path, files={"data.noun": ["x"]})  # no data.verb: not WordNet as expected
    server["files"]["/other.tar.gz"] = other
    with pytest.raises(ASRError, match="not the expected WordNet archive"):
        wordnet.wordnet_examples(tmp_path / "b", url=server["url"] + "/other.tar.gz", md5=None, log=lambda _: None)
    assert not (tmp_path / "b" / "wordnet-examples.txt").exists()
