"""Word-time accuracy against true word times (the synthetic corpus' manifests carry them).

    python scripts/word_times.py --checkpoint runs/demo/checkpoints/best.ckpt \
        --data data/synth/manifests/test.jsonl [--lm data/synth/lm/train-3gram.arpa --lm-weight 1]

Prints the median and 90th percentile of |start - true start| and |end - true end| over the words
that the hypothesis shares with the reference (as aligned by difflib).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asr.data.manifest import read_manifest  # noqa: E402
from asr.evaluate import word_time_errors  # noqa: E402
from asr.transcribe import load_model  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="manifest whose rows have 'words': [[WORD, start, end], ...]")
    p.add_argument("--lm")
    p.add_argument("--lm-weight", type=float, default=2.0)
    args = p.parse_args()
    rows = [r for r in read_manifest(args.data) if r.get("words")]
    model = load_model(args.checkpoint, "cpu")
    errors, ref_words = [], 0
    results = model.transcribe_many([r["audio"] for r in rows], lm=args.lm, lm_weight=args.lm_weight)
    for row, result in zip(rows, results):
        errors += word_time_errors(result.words, row["words"])
        ref_words += len(row["words"])
    e = np.array(errors) * 1000
    print(
        f"{len(rows)} utterances, {len(e) // 2} of {ref_words} words matched; boundary error "
        f"median {np.median(e):.0f} ms, p90 {np.percentile(e, 90):.0f} ms "
        f"(starts: median {np.median(e[0::2]):.0f} ms; ends: median {np.median(e[1::2]):.0f} ms)"
    )


if __name__ == "__main__":
    main()
