"""Network step time of model shapes on a corpus's own batch shapes: which shape buys most audio per second.

    python scripts/bench_step_shapes.py --manifest data/speechocean762/train.jsonl [--threads 2]

For each shape (frame stacking, hidden size, layers; directions summed, a character head on layer 2) and
each batch budget (20 and 40 s), times forward + backward of the network alone (fp32) on 8 batches the
duration sampler makes of the manifest (`asr.training.precision.probe_batches`), best of two passes after a warm-up.
Front end, CTC loss, optimiser and data loading are not included: a real step costs more.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asr.config import Config  # noqa: E402
from asr.model import ASRModel  # noqa: E402
from asr.text import CharTokenizer  # noqa: E402
from asr.training.module import model_dims  # noqa: E402
from asr.training.precision import model_step_seconds, probe_batches  # noqa: E402

SHAPES = {  # name: (subsample_factor, hidden, layers)
    "4x stacking, 3x320": (4, 320, 3),
    "6x stacking, 3x320": (6, 320, 3),
    "8x stacking, 3x320": (8, 320, 3),
    "4x stacking, 3x256": (4, 256, 3),
    "6x stacking, 3x384": (6, 384, 3),
    "4x stacking, 4x320": (4, 320, 4),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    durations = [json.loads(line)["duration"] for line in open(args.manifest, encoding="utf-8") if line.strip()]
    for batch_seconds in (20, 40):
        shapes = probe_batches(durations, batch_seconds)
        audio = sum(b * frames * 0.01 for b, frames in shapes)  # seconds: 10 ms feature frames
        for name, (factor, hidden, layers) in SHAPES.items():
            model = {
                "subsample_factor": factor,
                "hidden": hidden,
                "layers": layers,
                "merge": "sum",
                "dropout": 0.1,
                "char_ctc_layer": 2,
                "char_ctc_weight": 0.5,
            }
            net = ASRModel(model_dims(Config.from_dict({"model": model}), CharTokenizer().vocab_size)).network
            model_step_seconds(net, 80, shapes[:2], False)  # warm-up
            seconds = min(model_step_seconds(net, 80, shapes, False) for _ in range(2))
            print(
                f"{batch_seconds} s batches  {name:20s} {1000 * seconds / len(shapes):5.0f} ms/step  "
                f"{audio / seconds:6.1f} s of audio per s",
                flush=True,
            )


if __name__ == "__main__":
    main()
