"""Word n-gram LMs in ARPA format from transcripts or text, for beam search (`asr evaluate --lm`,
`asr tune-lm`): `asr prepare lm --text TRAIN.jsonl --order 3 --out lm.arpa`.

For large corpora KenLM's `lmplz -o 4 < text.txt > lm.arpa` (modified Kneser-Ney) is faster and better
smoothed; this builder is for where KenLM's tools are not installed (they have no pip wheel), e.g. to give
a synthetic corpus an LM built from its TRAINING text only.

Smoothing: interpolated absolute discounting (Ney et al. 1994), written in ARPA backoff form: a seen
n-gram stores its interpolated probability, and a history's backoff weight is the probability mass
its discounts freed, so every conditional distribution sums to one (tests/test_decoding.py checks).
"""

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from asr.errors import ASRError, file_error
from asr.text import normalize

DISCOUNT = 0.7


def count_ngrams(sentences, order):
    counts = [Counter() for _ in range(order + 1)]  # counts[n][tuple of n words]
    for words in sentences:
        padded = ["<s>"] + words + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                gram = tuple(padded[i : i + n])
                if gram != ("<s>",):
                    counts[n][gram] += 1
    return counts


def build(sentences, order=3, discount=DISCOUNT):
    """-> (probs, backoffs): {gram: log10 p}, {history gram: log10 backoff weight}."""
    counts = count_ngrams(sentences, order)
    probs, backoffs = {}, {}
    total = sum(counts[1].values())
    vocab = len(counts[1]) + 1  # + <unk>
    freed = discount * len(counts[1]) / total
    for (w,), c in counts[1].items():
        probs[(w,)] = (c - discount) / total + freed / vocab
    probs[("<unk>",)] = freed / vocab
    for n in range(2, order + 1):
        hist_total, hist_types = defaultdict(int), defaultdict(int)
        for gram, c in counts[n].items():
            hist_total[gram[:-1]] += c
            hist_types[gram[:-1]] += 1
        for h in hist_total:
            backoffs[h] = discount * hist_types[h] / hist_total[h]
        for gram, c in counts[n].items():
            h = gram[:-1]
            probs[gram] = (c - discount) / hist_total[h] + backoffs[h] * lower_prob(probs, backoffs, gram[1:])
    probs[("<s>",)] = 0.0  # never predicted; ARPA convention gives it log10 p = -99
    return (
        {g: (math.log10(p) if p > 0 else -99.0) for g, p in probs.items()},
        {h: math.log10(b) for h, b in backoffs.items()},
    )


def lower_prob(probs, backoffs, gram):
    """p(gram[-1] | gram[:-1]) from the model built so far (backing off as ARPA readers do)."""
    if gram in probs:
        return probs[gram]
    if len(gram) == 1:
        return probs[("<unk>",)]
    return backoffs.get(gram[:-1], 1.0) * lower_prob(probs, backoffs, gram[1:])


def write_arpa(probs, backoffs, order, path):
    by_order = defaultdict(list)
    for gram in probs:
        by_order[len(gram)].append(gram)
    with open(path, "w") as f:
        f.write("\\data\\\n")
        for n in range(1, order + 1):
            f.write(f"ngram {n}={len(by_order[n])}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            for gram in sorted(by_order[n]):
                line = f"{probs[gram]:.6f}\t{' '.join(gram)}"
                if n < order and gram in backoffs:
                    line += f"\t{backoffs[gram]:.6f}"
                elif n < order:
                    line += "\t0.0"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def word_sequences(paths):
    """Normalised word lists, one per manifest row or non-empty text line."""
    for path in paths:
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            number = 0
            try:
                for number, line in enumerate(f, 1):  # noqa: B007 (the error message names it)
                    if not line.strip():
                        continue
                    text = json.loads(line)["text"] if path.suffix == ".jsonl" else line
                    words = normalize(text).split()
                    if words:
                        yield words
            except UnicodeDecodeError:
                raise file_error(path, "not UTF-8 text") from None
            except (ValueError, KeyError, TypeError):
                raise file_error(path, f'line {number}: not a manifest row with a "text"') from None


def build_arpa(inputs, out, order: int = 3) -> tuple[Path, int, int]:
    """Manifests (.jsonl: their "text") or plain text files (a sentence per line) -> an ARPA file at `out`;
    returns (out, sentences, n-grams)."""
    out = Path(out)
    if order < 1:
        raise ASRError(f"--order {order}: expected 1 or more")
    if out.is_dir():
        raise file_error(out, "is a folder: --out names the ARPA file to write")
    for path in map(Path, inputs):
        if not path.is_file():
            raise file_error(path, "not found")
    sentences = list(word_sequences(inputs))
    if not sentences:
        raise ASRError(f"{', '.join(map(str, inputs))}: no words to build an LM from")
    probs, backoffs = build(sentences, order)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_arpa(probs, backoffs, order, out)
    return out, len(sentences), len(probs)
