"""Free Spoken Digit Dataset: real 8 kHz recordings named {digit}_{speaker}_{take}.wav.

The split is speaker-independent: every recording of `test_speaker` is the test set, so the test
score measures generalisation to an unseen voice (the upstream take-0..4 split shares speakers).
"""

import random
import re
from pathlib import Path

from asr.audio import audio_duration
from asr.data.manifest import write_manifest
from asr.errors import ASRError, file_error

DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_NAME = re.compile(r"([0-9])_([A-Za-z0-9]+)_([0-9]+)\.wav")


def _rows(root: Path, log) -> list[dict]:
    rows, skipped = [], []
    for path in sorted(root.glob("*.wav")):
        match = _NAME.fullmatch(path.name)
        if not match:
            skipped.append((path, "name is not {digit}_{speaker}_{take}.wav"))
            continue
        try:
            duration = audio_duration(path)
        except Exception as e:  # one corrupt file should not sink the other 2,999
            skipped.append((path, str(e)))
            continue
        if not duration > 0:
            skipped.append((path, "audio has no samples"))
            continue
        digit, speaker, _ = match.groups()
        rows.append(
            {
                "id": path.stem,
                "audio": str(path),
                "duration": duration,
                "text": DIGIT_WORDS[int(digit)],
                "speaker": speaker,
            }
        )
    if skipped:
        log(
            f"{root}: skipped {len(skipped)} of {len(rows) + len(skipped)} files "
            f"(first: {skipped[0][0]}: {skipped[0][1]})"
        )
    return rows


def prepare_fsdd(root, out_dir, *, test_speaker="theo", dev_fraction=0.1, seed=0, log=print) -> dict:
    """Write train/dev/test.jsonl into `out_dir`; returns {"train": path, "dev": path, "test": path}.

    test = all recordings of `test_speaker`; dev = a seeded random `dev_fraction` of the other
    speakers' recordings; train = the rest.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise file_error(root, "FSDD folder not found")
    if not 0 <= dev_fraction < 1:
        raise ASRError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    rows = _rows(root, log)
    if not rows:
        raise file_error(root, "no FSDD recordings ({digit}_{speaker}_{take}.wav) found")
    speakers = sorted({r["speaker"] for r in rows})
    if test_speaker not in speakers:
        raise ASRError(f"{root}: test speaker {test_speaker!r} not found (speakers: {', '.join(speakers)})")
    if len(speakers) < 2:
        raise ASRError(f"{root}: only speaker {test_speaker!r} found; nothing left to train on")
    test = [r for r in rows if r["speaker"] == test_speaker]
    others = [r for r in rows if r["speaker"] != test_speaker]
    # rows are sorted by file name, so the same seed picks the same dev set on every machine.
    order = list(range(len(others)))
    random.Random(seed).shuffle(order)
    dev_idx = set(order[: round(len(others) * dev_fraction)])
    splits = {
        "train": [r for i, r in enumerate(others) if i not in dev_idx],
        "dev": [r for i, r in enumerate(others) if i in dev_idx],
        "test": test,
    }
    out_dir = Path(out_dir)
    paths = {}
    for name, split in splits.items():
        paths[name] = write_manifest(out_dir / f"{name}.jsonl", split)
        log(f"{paths[name]}: {len(split)} recordings, {sum(r['duration'] for r in split) / 60:.1f} min")
    return paths
