"""From emissions to text and word times: greedy best path, or beam search with a KenLM n-gram LM
through flashlight-text's CTC decoder (its public Python API).

Both decoders return a `Hypothesis`: the emitted tokens and, for each, the first and last output
frame of its CTC path. Word times come from those frames (`words_with_times`), so they cost nothing
extra and stay consistent with the text. Emissions are NumPy arrays: decoding needs no PyTorch.
`DecodingOptions` says which decoder and how, and owns decoding.yaml (`save`, `load`).
"""

import dataclasses
import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from asr.errors import ASRError, file_error
from asr.schema import from_plain, parse_yaml
from asr.text import BLANK


@dataclass(frozen=True)
class DecodingOptions:
    decoder: str | None = None  # greedy | beam; None: beam when an LM or a lexicon is given, else greedy
    beam_size: int = 50
    lm: str | None = None  # KenLM word n-gram: ARPA, gzipped ARPA or binary
    lexicon: str | None = None  # allowed words, one per line (default with an LM: the LM's words)
    lm_weight: float = 2.0
    word_score: float = 0.0
    word_timestamps: bool = True  # fill Result.words (start, end, confidence of each word)

    def __post_init__(self):
        if self.decoder not in (None, "greedy", "beam"):
            raise ASRError(f"decoder {self.decoder!r}: expected greedy or beam")
        if self.decoder == "greedy" and (self.lm or self.lexicon):
            raise ASRError("an LM or a lexicon needs decoder='beam' (greedy decoding uses neither)")

    @property
    def beam(self) -> bool:
        return self.decoder == "beam" or (self.decoder is None and bool(self.lm or self.lexicon))

    def save(self, path, comment: str = "") -> Path:
        """Write decoding.yaml (what `asr tune-lm` and `asr export` write, and `load` reads); `comment`
        becomes its first lines, after '# '."""
        path = Path(path)
        header = "".join(f"# {line}\n" for line in comment.splitlines())
        path.write_text(header + yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))
        return path

    @classmethod
    def load(cls, path) -> "DecodingOptions":
        """decoding.yaml (`save`; any subset of the fields) -> DecodingOptions. A relative LM or lexicon
        path names a file beside the settings when there is one (as `asr export` writes them), else one
        relative to the current folder."""
        path = Path(path)
        if not path.is_file():
            raise file_error(path, "decoding settings not found")
        try:
            settings = parse_yaml(path.read_text()) or {}
            if isinstance(settings, dict):
                for key in ("lm", "lexicon"):
                    if isinstance(settings.get(key), str) and (path.parent / settings[key]).is_file():
                        settings[key] = str(path.parent / settings[key])
            return from_plain(cls, settings)
        except yaml.YAMLError as e:
            raise file_error(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
        except ASRError as e:
            raise file_error(path, str(e)) from None


def decoding_options(options: DecodingOptions | None = None, **changes) -> DecodingOptions:
    """`options` (or the defaults) with `changes`; an unknown name is an ASRError naming the closest."""
    base = dataclasses.asdict(options or DecodingOptions())
    values = {k: str(v) if isinstance(v, Path) else v for k, v in {**base, **changes}.items()}  # lm=Path(...)
    return from_plain(DecodingOptions, values)


@dataclass
class Hypothesis:
    text: str
    tokens: list[int]  # emitted token ids, blanks and CTC repeats removed
    spans: list[tuple[int, int]]  # first and last output frame of each token
    probs: list[float]  # mean posterior of each token over its frames (a confidence)


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the audio
    end: float
    confidence: float

    def as_dict(self) -> dict:
        return {
            "word": self.word,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": round(self.confidence, 3),
        }


def log_softmax(logits) -> np.ndarray:
    """(..., V) logits (a NumPy array, or a torch tensor on any device) -> float32 log posteriors."""
    x = to_numpy(logits).astype(np.float32, copy=False)
    top = x.max(axis=-1, keepdims=True)
    return x - (top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True)))


def to_numpy(x) -> np.ndarray:
    """A NumPy array or a torch tensor (any device, any type) -> a NumPy array, without importing torch."""
    if not hasattr(x, "detach"):
        return np.asarray(x)
    x = x.detach()
    return (x.float() if x.is_floating_point() else x).cpu().numpy()  # NumPy has no bf16


def path_to_tokens(path, log_probs: np.ndarray | None = None, skip=(BLANK,)):
    """A frame-level CTC path (one id per frame) -> tokens, (first, last) frames, and the mean posterior
    of each token over its frames (when (T', V) `log_probs` are given)."""
    tokens, spans = [], []
    prev = None
    for t, tok in enumerate(path):
        if tok != prev and tok not in skip:
            tokens.append(tok)
            spans.append([t, t])
        elif tok == prev and tok not in skip:
            spans[-1][1] = t
        prev = tok
    probs = (
        []
        if log_probs is None
        else [float(np.exp(log_probs[a : b + 1, tok]).mean()) for tok, (a, b) in zip(tokens, spans)]
    )
    return tokens, [tuple(s) for s in spans], probs


def greedy(logits, tokenizer) -> Hypothesis:
    """(T', V) logits -> the best path: the most likely token in every frame, collapsed."""
    log_probs = log_softmax(logits)
    tokens, spans, probs = path_to_tokens(log_probs.argmax(-1).tolist(), log_probs)
    return Hypothesis(" ".join(tokenizer.decode(tokens).split()), tokens, spans, probs)


def greedy_decode(logits, lengths, tokenizer) -> list[str]:
    """(B, T, V) logits, (B,) lengths (arrays or tensors) -> one string per utterance (validation's batched form)."""
    best, lengths = to_numpy(logits.argmax(-1)), to_numpy(lengths)  # only the (B, T) best ids leave the device
    return [" ".join(tokenizer.decode(path_to_tokens(row[:n].tolist())[0]).split()) for row, n in zip(best, lengths)]


def words_with_times(hyp: Hypothesis, tokenizer, frame_seconds: float) -> list[Word]:
    """Split the hypothesis' tokens into words; a word spans its first token's first frame to its
    last token's last frame."""
    words, current = [], []  # current: (character, token index) of the word being read

    def close():
        if current:
            first, last = current[0][1], current[-1][1]
            conf = [hyp.probs[i] for i in sorted({i for _, i in current})]
            words.append(
                Word(
                    "".join(c for c, _ in current),
                    hyp.spans[first][0] * frame_seconds,
                    (hyp.spans[last][1] + 1) * frame_seconds,
                    sum(conf) / len(conf),
                )
            )
            current.clear()

    for i, tok in enumerate(hyp.tokens):
        for ch in tokenizer.token_text(tok):
            if ch == " ":
                close()
            else:
                current.append((ch, i))
    close()
    return words


class BeamSearch:
    """CTC prefix beam search with an optional KenLM word n-gram LM and lexicon (flashlight-text).

    - `lm` (ARPA, gzipped ARPA or KenLM binary) and no `lexicon`: the LM's own words are the lexicon
      (spelt with the model's tokens), so every output word is one the LM knows.
    - `lexicon` (one word per line, anything after the first field ignored: a plain word list or
      librispeech-lexicon.txt): words are limited to it, and spelt with the model's tokens.
    - neither: lexicon-free beam search over the model's tokens, no LM.
    The LM and lexicon are checked here, before any audio is decoded.
    """

    def __init__(
        self,
        tokenizer,
        beam_size: int = 50,
        lm=None,
        lexicon=None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        beam_threshold: float = 25.0,
    ):
        from flashlight.lib.text.decoder import ZeroLM
        from flashlight.lib.text.dictionary import Dictionary

        self.tokenizer = tokenizer
        vocab = tokenizer.vocab_size
        # the decoder needs a word separator ("silence") token: a char vocabulary's space is one
        space = [i for i in range(vocab) if tokenizer.token_text(i) == " "] if tokenizer.kind == "char" else []
        self.extra_sil = not space  # subword vocabularies have none: add one the model never emits
        self.sil = space[0] if space else vocab  # (an extra column after the model's, see __call__)
        self.num_tokens = vocab + self.extra_sil
        self._tmp = tempfile.TemporaryDirectory(prefix="asr-decoder-")
        lm_path = check_lm(lm, Path(self._tmp.name)) if lm else None
        words = read_lexicon_words(lexicon) if lexicon else (arpa_words(lm_path) if lm_path else None)
        if lm_path and words is None:
            raise file_error(lm, "a binary KenLM needs --lexicon (its words cannot be read from the file)")
        self.spellings = self._spell(words, lexicon or lm) if words is not None else None
        self.settings = {"beam_size": beam_size, "beam_threshold": beam_threshold}
        self.lm, self.word_dict, self.trie = ZeroLM(), None, None
        if self.spellings:  # word ids for the LM and the trie, plus the <unk> the decoder asks for
            self.word_dict = Dictionary(list(dict.fromkeys([*self.spellings, "<unk>"])))
            self.word_dict.set_default_index(self.word_dict.get_index("<unk>"))
            if lm_path:  # read once here, shared by every with_weights() copy: a big LM takes minutes
                from flashlight.lib.text.decoder.kenlm import KenLM

                try:
                    self.lm = KenLM(str(lm_path), self.word_dict)
                except RuntimeError as e:  # a valid header over damaged contents: KenLM's words, in one line
                    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                    raise file_error(lm, f"not a readable language model ({first})") from None
            self.trie = self._make_trie()
        self.decoder = self._build(lm_weight, word_score)

    def _make_trie(self):
        """Prefix tree of the spellings; smearing gives each node its best word's unigram LM score, so
        the search can weigh a word before it is complete."""
        from flashlight.lib.text.decoder import SmearingMode, Trie

        trie, start = Trie(self.num_tokens, self.sil), self.lm.start(False)
        for word, spelling in self.spellings.items():
            index = self.word_dict.get_index(word)
            trie.insert(spelling, index, self.lm.score(start, index)[1])
        trie.smear(SmearingMode.MAX)
        return trie

    def _build(self, lm_weight: float, word_score: float):
        """A flashlight decoder with these weights over the already loaded LM and trie."""
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
        )

        self.lm_weight, self.word_score = lm_weight, word_score
        common = dict(
            beam_size=self.settings["beam_size"],
            beam_size_token=self.num_tokens,
            beam_threshold=self.settings["beam_threshold"],
            lm_weight=lm_weight,
        )
        if self.trie is None:
            options = LexiconFreeDecoderOptions(
                **common, sil_score=0.0, log_add=False, criterion_type=CriterionType.CTC
            )
            return LexiconFreeDecoder(options, self.lm, self.sil, BLANK, [])
        options = LexiconDecoderOptions(
            **common,
            word_score=word_score,
            unk_score=float("-inf"),
            sil_score=0.0,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        unk = self.word_dict.get_index("<unk>")
        return LexiconDecoder(options, self.trie, self.lm, self.sil, BLANK, unk, [], False)  # False: word LM

    def with_weights(self, lm_weight: float, word_score: float) -> "BeamSearch":
        """The same decoder with other LM weight and word score; the loaded LM is shared, not re-read."""
        import copy

        other = copy.copy(self)
        other.decoder = other._build(lm_weight, word_score)
        return other

    def _spell(self, words, source) -> dict[str, list[int]]:
        """Spell each word with the model's token ids; words the model cannot spell are left out."""
        lexicon, skipped = {}, 0
        for word in words:
            if self.tokenizer.unknown_chars(word) or not word:
                skipped += 1
                continue
            # a char word ends with its space, as the model writes it; word pieces carry their own
            # word start, so the extra separator is never spelt (nor emitted)
            lexicon[word] = self.tokenizer.encode(word) + ([] if self.extra_sil else [self.sil])
        if not lexicon or skipped > len(words) / 2:
            example = next((w for w in words if self.tokenizer.unknown_chars(w)), "")
            raise file_error(
                source,
                f"vocabulary does not match the model: {skipped} of {len(words)} words use "
                f"characters the model cannot write (e.g. {example!r})",
            )
        return lexicon

    def __call__(self, logits) -> Hypothesis:
        """(T', V) logits -> the best hypothesis."""
        log_probs = log_softmax(logits)
        if log_probs.shape[0] == 0:
            return Hypothesis("", [], [], [])
        emissions = log_probs
        if self.extra_sil:
            emissions = np.concatenate([log_probs, np.full((len(log_probs), 1), -1e4, np.float32)], axis=1)
        emissions = np.ascontiguousarray(emissions, dtype=np.float32)  # flashlight reads a raw (T, N) float32 buffer
        results = self.decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])
        if not results:
            return Hypothesis("", [], [], [])
        path = list(results[0].tokens)[1:-1]  # flashlight pads the frame path with a start and an end state
        skip = (BLANK, self.sil) if self.extra_sil else (BLANK,)
        tokens, spans, probs = path_to_tokens(path, log_probs, skip)
        return Hypothesis(" ".join(self.tokenizer.decode(tokens).split()), tokens, spans, probs)


def check_lm(path, tmp_dir: Path) -> Path:
    """An LM file -> a path KenLM can read (gzipped ARPA is unpacked once, next to it or in tmp)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "language model not found")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"mmap lm http://kheafield.com/code"):
        return path  # KenLM binary
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(64)
        except OSError as e:
            raise file_error(path, f"not a readable gzip file ({e})") from None
        if not head.lstrip().startswith(b"\\data\\"):
            raise file_error(path, "not a language model: expected an ARPA file (\\data\\ header) inside the gzip")
        return _gunzip(path, tmp_dir)
    if not head.lstrip().startswith(b"\\data\\"):
        raise file_error(path, "not a language model: expected an ARPA file (\\data\\ header) or a KenLM binary")
    return path


def _gunzip(path: Path, tmp_dir: Path) -> Path:
    target = path.with_suffix("")  # 4-gram.arpa.gz -> 4-gram.arpa, kept for the next run
    if target.is_file() and target.stat().st_mtime >= path.stat().st_mtime:
        return target  # only ever a complete unpacking: it is renamed into place at the end
    if not os.access(path.parent, os.W_OK):
        target = tmp_dir / target.name  # read-only folder: unpack for this run only
    partial = target.with_name(target.name + ".partial")
    with gzip.open(path, "rb") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.replace(target)
    return target


def arpa_words(path: Path) -> list[str] | None:
    """The unigrams of an ARPA file (None for a KenLM binary), without <s>, </s> and <unk>."""
    with open(path, "rb") as f:
        if f.read(10).startswith(b"mmap lm"):
            return None
    words, in_unigrams = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                fields = line.split("\t") if "\t" in line else line.split()
                if len(fields) >= 2 and fields[1] not in ("<s>", "</s>", "<unk>"):
                    words.append(fields[1])
    if not words:
        raise file_error(path, "the ARPA file has no unigrams")
    return words


def read_lexicon_words(path) -> list[str]:
    """First field of each line: a plain word list, a flashlight lexicon or librispeech-lexicon.txt."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "lexicon not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise file_error(path, "not a lexicon: not a UTF-8 text file") from None
    words = list(dict.fromkeys(line.split()[0] for line in text.splitlines() if line.strip()))
    if not words:
        raise file_error(path, "the lexicon is empty")
    return words
