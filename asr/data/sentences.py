"""Real English sentences from any text file, for synthesizers to read and tokenizers and LMs to learn.

A file may hold one sentence a line or running prose (paragraphs, lines wrapped anywhere): blank lines
end paragraphs, and paragraphs are split into sentences at ., ! and ? (not after Mr., Dr. and the like).
Project Gutenberg's header and licence are cut off where its "*** START OF" / "*** END OF" markers are.

Only sentences that a synthesizer reads exactly as the transcript says are kept: no digits (1789 is
"seventeen eighty-nine" or "one thousand..."), no abbreviations or acronyms (Mr., U.S., IV), no symbols;
4-24 words of letters with at most an inner apostrophe. What is spoken keeps the sentence's commas and
end mark (they shape its prosody) and reads the transcript's words one for one.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from asr.errors import file_error
from asr.text import normalize

WORDS = (4, 24)
_ABBREVIATIONS = r"(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Rev|Gen|Col|Capt|Lt|Sgt|Hon|Gov|Messrs|vs|etc|viz|No|Vol|Ch)"
# Lookbehinds have one width each: one per abbreviation, and one for an initial ("J. Smith").
_NOT_AFTER = "".join(rf"(?<!\b{a})" for a in _ABBREVIATIONS[3:-1].split("|")) + r"(?<!\b[A-Z])"
_SENTENCE_END = re.compile(_NOT_AFTER + r"([.!?][\"')\]]*)\s+(?=[\"'(\[]*[A-Z])")
_END_MARKS = tuple(".!?:;,\"')]")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_DROP = re.compile(r"[\"“”‘’()\[\]_*]|(?<![a-zA-Z])'|'(?![a-zA-Z])")  # quotes, brackets, emphasis marks
_DASHES = re.compile(r"\s*(?:--+|—|–)\s*|-")  # a dash is a pause (a comma); a hyphen joins two words


@dataclass(frozen=True)
class Sentence:
    text: str  # the transcript: normalised, upper case ("IT WAS A COLD DAY")
    spoken: str  # what the synthesizer reads: the same words, lower case, with the sentence's punctuation


def split_sentences(text: str) -> list[str]:
    """Running prose or one sentence a line -> sentences (whitespace collapsed), in order."""
    text = _strip_gutenberg(text.replace("\r\n", "\n").replace("\u2019", "'").replace("\u2018", "'"))
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        unmarked = sum(not line.endswith(_END_MARKS) for line in lines)
        capitalised = sum(bool(re.match(r"[\"'(\[]*[A-Z]", line)) for line in lines)
        if len(lines) > 1 and unmarked > len(lines) / 2 and capitalised >= 0.8 * len(lines):
            chunks = lines  # a list of sentences without end marks; wrapped prose starts most lines mid-sentence
        else:
            chunks = [" ".join(paragraph.split())]
        for chunk in chunks:
            out += [s.strip() for s in _split_paragraph(" ".join(chunk.split())) if s.strip()]
    return out


def _split_paragraph(paragraph: str) -> list[str]:
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        parts.append(paragraph[start : m.end(1)])
        start = m.end()
    return parts + [paragraph[start:]]


def _strip_gutenberg(text: str) -> str:
    start = re.search(r"^\*\*\* ?START OF.*$", text, re.MULTILINE)
    end = re.search(r"^\*\*\* ?END OF.*$", text, re.MULTILINE)
    begin = start.end() if start else 0
    return text[begin : end.start() if end and end.start() > begin else None]


def speakable(sentence: str, words=WORDS) -> Sentence | None:
    """A sentence a synthesizer reads as its transcript says, or None (see the module docstring)."""
    first = re.search(r"[A-Za-z]", sentence)  # after any opening quote or bracket
    if re.search(r"[0-9#$%&@/\\|<>=+~^{}]", sentence) or not first or not first.group().isupper():
        return None
    if re.search(rf"\b{_ABBREVIATIONS}\.|\b[A-Z]\.|\b[A-Z]{{2,}}\b", sentence):
        return None  # abbreviations, initials and acronyms are read in ways a transcript does not say
    if sentence.count("'") and re.search(r"\w'(?:\s|$)", sentence):
        return None  # a possessive after s (James') or a dropped letter (goin'): spoken one way, written another
    spoken = _DASHES.sub(lambda m: ", " if m.group().strip() != "-" else " ", _DROP.sub("", sentence))
    spoken = re.sub(r"\s+([,;:.!?])", r"\1", " ".join(spoken.split())).strip(" ,;:")
    if spoken and spoken[-1] not in ".!?":
        spoken += "."
    spoken = spoken.lower()
    spoken_words = _WORD.findall(spoken)
    if not words[0] <= len(spoken_words) <= words[1] or re.search(r"[^a-z' ,;:.!?]", spoken):
        return None
    text = normalize(spoken)
    if text.split() != [w.upper() for w in spoken_words]:
        return None
    return Sentence(text, spoken)


def read_sentences(paths, words=WORDS) -> list[Sentence]:
    """Every speakable sentence of the text files `paths` (one path or many), each once, in file order."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    seen, out = set(), []
    for path in map(Path, paths):
        if not path.is_file():
            raise file_error(path, "text file not found")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise file_error(path, f"cannot read it ({e.strerror})") from None
        for raw in split_sentences(text):
            s = speakable(raw, words)
            if s is not None and s.text not in seen:
                seen.add(s.text)
                out.append(s)
    return out


def text_files(paths) -> list[Path]:
    """Files and folders -> the text files they name (a folder: every *.txt under it, sorted)."""
    out = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            found = sorted(path.rglob("*.txt"))
            if not found:
                raise file_error(path, "no .txt files in this folder")
            out += found
        else:
            out.append(path)
    return out
