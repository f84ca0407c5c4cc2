"""`asr serve` under load: requests/s and latency at 1, 4 and 16 concurrent clients, request batching on and
off, for a model exported as float32 and as int8; beside it `asr transcribe` on the same files.

    python scripts/bench_serve.py --checkpoint runs/demo/checkpoints/best.ckpt \
        [--audio ../shared/data/librispeech-untranscribed] [--clients 1,4,16] [--seconds 20]

The checkpoint is exported twice (float32, --int8) into a temporary folder. For each export and each
batching setting one `asr serve` process is started; each client count then posts the files in turn
(every client its own order) for --seconds; "errors" counts answers that are not 200 or whose text differs
from `asr transcribe`'s for all files in one command.
The clients are threads in this process, on the same CPU cores as the server: on a 2-core machine the
figures are a floor. Prints a Markdown table.
"""

import argparse
import contextlib
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from asr.audio import audio_duration, expand_inputs  # noqa: E402
from asr.export import export  # noqa: E402
from asr.transcribe import load_model  # noqa: E402


def form(path: Path) -> bytes:
    head = f'--B\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n\r\n'
    return head.encode() + path.read_bytes() + b"\r\n--B--\r\n"


@contextlib.contextmanager
def server(model: Path, port: int, *flags):
    cmd = [sys.executable, "-m", "asr.cli", "serve", "--model", str(model), "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait()


def load(port: int, bodies, expected, clients: int, seconds: float) -> dict:
    """`clients` threads posting for `seconds` -> requests/s, audio x real time, p50/p95 latency, errors."""
    latencies, errors, audio = [], [], [0.0]
    stop = time.monotonic() + seconds

    def run(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        n = i * 7  # each client its own order
        while time.monotonic() < stop:
            path, body, duration = bodies[n % len(bodies)]
            started = time.monotonic()
            conn.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": "multipart/form-data; boundary=B"})
            response = conn.getresponse()
            text = response.read()
            latencies.append(time.monotonic() - started)
            if response.status != 200 or json.loads(text)["text"] != expected[path]:
                errors.append((response.status, text[:200]))
            audio[0] += duration
            n += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"rps": len(latencies) / wall, "xrt": audio[0] / wall, "p50": p50, "p95": p95, "errors": len(errors)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--audio", default=str(ROOT.parent / "shared" / "data" / "librispeech-untranscribed"))
    p.add_argument("--files", type=int, default=32, help="how many of the audio files to post (default 32)")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--weights", default="float32,int8")
    p.add_argument("--batch-wait-ms", type=float, default=0, help="asr serve's --batch-wait-ms with batching on")
    args = p.parse_args()

    paths = expand_inputs([args.audio])[: args.files]
    durations = [audio_duration(f) for f in paths]
    print(f"{len(paths)} files, {sum(durations):.0f} s of audio, {np.mean(durations):.1f} s on average")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weights in args.weights.split(","):
            folder = Path(tmp) / weights
            export(args.checkpoint, folder, int8=weights == "int8", log=lambda *a: None)
            expected = {str(r.path): r.text for r in load_model(folder).transcribe_many(paths)}
            started = time.monotonic()  # the CLI a user would run instead, start-up included
            cmd = [sys.executable, "-m", "asr.cli", "transcribe", "--model", str(folder), *map(str, paths)]
            subprocess.run(cmd, capture_output=True, check=True)
            wall = time.monotonic() - started
            rows.append((weights, "`asr transcribe`, all files in one command", "", len(paths) / wall, None, None, 0))
            bodies = [(str(f), form(f), d) for f, d in zip(paths, durations)]
            for batching in (True, False):
                flags = ["--batch-wait-ms", str(args.batch_wait_ms)] if batching else ["--no-batching"]
                with server(folder, args.port, *flags):
                    for clients in map(int, args.clients.split(",")):
                        r = load(args.port, bodies, expected, clients, args.seconds)
                        on = f"on, wait {args.batch_wait_ms:g} ms"
                        rows.append((weights, on if batching else "off", clients, r["rps"], r["p50"], r["p95"],
                                     r["errors"]))  # fmt: skip
                        print(rows[-1], flush=True)
    print("\n| weights | batching | clients | requests/s | p50 latency | p95 latency | errors |")
    print("|---|---|---|---|---|---|---|")
    for weights, batching, clients, rps, p50, p95, errors in rows:
        lat = (f"{p50 * 1000:.0f} ms", f"{p95 * 1000:.0f} ms") if p50 is not None else ("", "")
        print(f"| {weights} | {batching} | {clients} | {rps:.1f} | {lat[0]} | {lat[1]} | {errors} |")


if __name__ == "__main__":
    main()
