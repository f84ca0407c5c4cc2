"""Training on a GPU, measured in one call: the machine, bench_train on the 960 h config, step time per
batch shape, the LSTM's two directions in sequence vs on two CUDA streams, the host syncs of a step,
the top kernels of a profile, and a short `asr train` through Lightning in 16-mixed.

    bash scripts/gpu_check.sh                          (a bare GPU machine: installs the wheels in .whl/)
    OUT=gpu-check-out python scripts/gpu_check.py      (where `asr` already imports)
    python scripts/gpu_check.py --device cpu --quick   (a dry run on tiny shapes, about a minute)

Each section runs in a process of its own under a time limit, all of them within --budget seconds: one
that fails, hangs or runs out of time records why, and the others go on. Sections that need CUDA say
"skipped: no CUDA" on a CPU. Written to $OUT (default ./gpu-check-out), at most 7 files: results.json
(every figure), summary.md, log.txt (each section's output), profile.txt (kernel tables),
trace.json.gz (one step's profiler trace), train_metrics.csv (`asr train`'s metrics), dmon.txt
(nvidia-smi dmon during bench_train).
"""

import argparse
import contextlib
import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
QUICK = [
    "model.hidden=32",
    "model.layers=2",
    "data.max_batch_seconds=24",
    "data.num_workers=0",
    "data.max_duration=6",
    "trainer.precision=32-true",
]
CONFIG = ROOT / "configs" / "librispeech-960.yaml"
SYNC_STEPS = 10  # training steps whose host syncs are counted (CTCModule reads its skip count every 10th)


def load(ctx):
    from asr.config import load_config

    return load_config(
        CONFIG, [f"data.train={CONFIG}", f"data.val={CONFIG}", *(QUICK if ctx.quick else []), *ctx.overrides]
    )


def make_batch(ctx, size: int, seconds: float) -> dict:
    """`size` utterances of `seconds` of noise with random letters at 15 a second, collated on the host
    (pinned for a GPU, as the loader does): a batch of the duration sampler's shape."""
    import numpy as np
    from bench_train import NoiseUtterances, random_texts

    from asr.data.batching import collate

    durations = [seconds] * size
    utterances = NoiseUtterances(durations, random_texts(durations, np.random.default_rng(size)))
    batch = collate([utterances[i] for i in range(size)])
    return {k: v.pin_memory() if ctx.cuda and hasattr(v, "pin_memory") else v for k, v in batch.items()}


def train_step(ctx):
    """-> (CTCModule, step(batch)) of the 960 config as `asr train` runs it: 16-mixed on a GPU, else fp32."""
    from bench_train import optimized_step

    return optimized_step(load(ctx), ctx.torch_device, "16-mixed" if ctx.cuda else "32-true")


def wait(ctx):
    if ctx.cuda:
        ctx.torch.cuda.synchronize()


@contextlib.contextmanager
def counting_syncs(counts: dict):
    """Counts every synchronizing CUDA call in the block into `counts`, keyed by the Python line that
    made it and the innermost line of this project (or Lightning) that led there."""
    import torch

    def show(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        # The Python stack, not the warning's own location (for torch's C++ warnings, a C++ file).
        stack = [f for f in traceback.extract_stack()[:-1] if not f.filename.endswith("warnings.py")]
        ours = [
            f
            for f in stack
            if f.filename.startswith(f"{ROOT}/asr/")
            or "lightning" in f.filename
            or f.filename.endswith("bench_train.py")
        ]
        where, via = (f"{short(f.filename)}:{f.lineno} {f.name}" for f in (stack[-1], (ours or stack)[-1]))
        key = where if via == where else f"{where} <- {via}"
        counts[key] = counts.get(key, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(0)


def short(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/", f"{ROOT}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def top_syncs(counts: dict, steps: int) -> dict:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:12]
    return {
        "per_step": sum(counts.values()) / max(steps, 1),
        "steps": steps,
        "where": [{"count": n, "line": k} for k, n in ranked],
    }


# ------------------------------------------------------------------------------------------ sections
def machine(ctx):
    import pytorch_lightning as pl
    import torch

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "lightning": pl.__version__,
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "shm_free_gib": round(shutil.disk_usage("/dev/shm").free / 2**30, 1) if Path("/dev/shm").exists() else None,
    }
    if ctx.cuda:
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": p.name,
            "sm": f"{p.major}{p.minor}",
            "sms": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1),
        }
    if shutil.which("nvidia-smi"):
        print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout)
        query = "name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu"
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    return info


def bench_train(ctx):
    from bench_train import benchmark

    config = load(ctx)
    shm = shutil.disk_usage("/dev/shm").free if Path("/dev/shm").exists() else 0
    if ctx.cuda and shm < 4 * 2**30 and config.data.num_workers:  # 8 workers x 2 prefetched ~100 MB batches
        print(f"/dev/shm has {shm / 2**30:.1f} GiB free: loader workers off")
        config.data.num_workers = 0
    seconds = 1.0 if ctx.quick else max(5.0, min(25.0, (ctx.left() - 60) / 2))  # per path, within the time box
    result = benchmark(config, ctx.torch_device, seconds, utterances=60 if ctx.quick else 4000)
    print(json.dumps(result, indent=1))
    return result


def step_shapes(ctx):
    """A training step per batch shape, ~the config's padded audio each: sizes that are and are not
    multiples of 8, and above 128 (cuDNN's persistent LSTM kernel: fp16, batch % 8 == 0, <= 128)."""
    from asr.features import num_frames

    torch = ctx.torch
    module, step = train_step(ctx)
    shapes = (
        [(8, 1.0), (7, 1.0), (9, 1.0), (16, 0.5)]
        if ctx.quick
        else [
            (80, 20.0),
            (79, 20.0),
            (81, 19.75),
            (88, 18.18),
            (96, 16.67),
            (100, 16.0),
            (104, 15.38),
            (128, 12.5),
            (136, 11.76),
            (200, 8.0),
            (400, 4.0),
        ]
    )
    warmups, reps = (1, 1) if ctx.quick else (2, 3)
    rows = ctx.result.setdefault("rows", [])
    for size, seconds in shapes:
        if ctx.left() < 15:
            rows.append({"batch": size, "seconds": seconds, "error": "not reached: out of time"})
            continue
        row = {"batch": size, "seconds": seconds, "persist_eligible": ctx.cuda and size % 8 == 0 and size <= 128}
        try:
            batch = make_batch(ctx, size, seconds)
            for _ in range(warmups):
                step(batch)
            wait(ctx)
            if ctx.cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            for _ in range(reps):
                step(batch)
            wait(ctx)
            sec = (time.perf_counter() - start) / reps
            frames = size * int(module.model.network.subsample.output_lengths(num_frames(int(seconds * 16000))))
            row.update(
                ms=round(1000 * sec, 1),
                x_real_time=round(size * seconds / sec, 1),
                tflops=round(module.model.training_flops(frames) / sec / 1e12, 2),
                peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if ctx.cuda else None,
            )
        except Exception as e:  # e.g. out of memory: this shape's error, then the next
            row["error"] = f"{type(e).__name__}: {e}"[:300]
            if ctx.cuda:
                torch.cuda.empty_cache()
        print(row, flush=True)
        rows.append(row)
        ctx.save()
    return ctx.result


def lstm_streams(ctx):
    """One inner BiLSTMLayer of the 960 config (fp16, 20 s), forward + backward: its two directions one
    after the other (as asr.model runs them) vs on two CUDA streams."""
    from asr.model import BiLSTMLayer, reverse_within_length

    torch, config = ctx.torch, load(ctx)
    hidden, frames, dev = config.model.hidden, 500, ctx.torch_device
    width = 2 * hidden if config.model.merge == "concat" else hidden
    layer = BiLSTMLayer(width, hidden, config.model.merge).to(dev)
    streams = torch.cuda.Stream(), torch.cuda.Stream()
    autocast = lambda: torch.autocast("cuda", dtype=torch.float16)  # noqa: E731

    def sequential(x, lengths):
        with autocast():
            return layer(x, lengths)

    def two_streams(x, lengths):
        here = torch.cuda.current_stream()
        for s in streams:
            s.wait_stream(here)
        with autocast():
            with torch.cuda.stream(streams[0]):
                forward, _ = layer.fwd(x)
            with torch.cuda.stream(streams[1]):
                backward, _ = layer.bwd(reverse_within_length(x, lengths))
                backward = reverse_within_length(backward, lengths)
        for s in streams:
            here.wait_stream(s)
        return torch.cat([forward, backward], -1) if layer.merge == "concat" else forward + backward

    def timed(fn, x, lengths, reps=5):
        for _ in range(2):
            fn(x, lengths).float().sum().backward()
        wait(ctx)
        start = time.perf_counter()
        for _ in range(reps):
            fn(x, lengths).float().sum().backward()
        wait(ctx)
        return 1000 * (time.perf_counter() - start) / reps

    rows = ctx.result.setdefault("rows", [])
    for size in (64, 80, 81, 128, 136, 200):
        if ctx.left() < 10:
            break
        x = torch.randn(size, frames, width, device=dev, requires_grad=True)
        lengths = torch.full((size,), frames, device=dev)
        lengths[size // 2 :] = frames - 7  # bucketed batches: nearly equal lengths
        with torch.no_grad():
            diff = float((sequential(x, lengths).float() - two_streams(x, lengths).float()).abs().max())
        seq, par = timed(sequential, x, lengths), timed(two_streams, x, lengths)
        rows.append(
            {
                "batch": size,
                "sequential_ms": round(seq, 2),
                "two_streams_ms": round(par, 2),
                "speedup": round(seq / par, 3),
                "max_abs_diff": diff,
            }
        )
        print(rows[-1], flush=True)
        ctx.save()
    return ctx.result


def host_syncs(ctx):
    """Synchronizing CUDA calls in 10 training steps (torch.cuda.set_sync_debug_mode), after 2 warm-ups:
    10, so that the NaN guard's one read of its skip count every 10 steps is counted once."""
    module, step = train_step(ctx)
    batch = make_batch(ctx, 80, 20.0)
    for _ in range(2):
        step(batch)
    wait(ctx)
    counts = {}
    with counting_syncs(counts):
        for _ in range(SYNC_STEPS):
            step(batch)
    wait(ctx)
    return top_syncs(counts, SYNC_STEPS)


def profile(ctx):
    """torch.profiler of one training step at a persistent-kernel shape and one just off it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity

    torch = ctx.torch
    module, step = train_step(ctx)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])

    def self_ms(e):  # device time where there is a device, else CPU time
        if not ctx.cuda:
            return e.self_cpu_time_total / 1000
        return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) / 1000

    shapes = [(8, 1.0), (9, 1.0)] if ctx.quick else [(80, 20.0), (81, 19.75)]
    for k, (size, seconds) in enumerate(shapes):
        batch = make_batch(ctx, size, seconds)
        step(batch)
        wait(ctx)
        # The profiler's first step pays for its own start (CUPTI): profile the second.
        with torch.profiler.profile(
            activities=activities, schedule=torch.profiler.schedule(wait=0, warmup=1, active=1)
        ) as prof:
            step(batch)
            prof.step()
            step(batch)
            wait(ctx)
        events = prof.key_averages()
        kernels = sorted(
            (
                e
                for e in events
                if (not ctx.cuda or e.device_type == DeviceType.CUDA) and not e.key.startswith("ProfilerStep")
            ),
            key=self_ms,
            reverse=True,
        )
        ctx.result[f"b{size}"] = {
            "batch": size,
            "seconds": seconds,
            "total_ms": round(sum(map(self_ms, kernels)), 2),
            "top": [{"name": e.key[:160], "ms": round(self_ms(e), 3), "calls": e.count} for e in kernels[:15]],
            "persist_kernels": sorted({e.key[:160] for e in kernels if "persist" in e.key.lower()}),
        }
        with open(ctx.out / "profile.txt", "a") as tables:
            tables.write(
                f"##### batch {size} x {seconds} s: one training step, by self {'device' if ctx.cuda else 'CPU'} time\n"
            )
            tables.write(
                events.table(
                    sort_by="self_cuda_time_total" if ctx.cuda else "self_cpu_time_total",
                    row_limit=40,
                    max_name_column_width=120,
                )
                + "\n\n"
            )
        if k == 0:
            with tempfile.TemporaryDirectory() as tmp:
                prof.export_chrome_trace(f"{tmp}/trace.json")
                with open(f"{tmp}/trace.json", "rb") as f, gzip.open(ctx.out / "trace.json.gz", "wb") as g:
                    shutil.copyfileobj(f, g)
        ctx.save()
    return ctx.result


def asr_train(ctx):
    """`asr train` (the demo config, characters) through Lightning on a small generated corpus, in 16-mixed
    on a GPU (32-true on a CPU, where Lightning has no fp16); on a GPU also the syncs of SYNC_STEPS steps."""
    import pytorch_lightning as pl
    import torch

    import asr.training.train as training
    from asr.cli import main as cli

    work = Path(tempfile.mkdtemp(prefix="gpu_check_train_"))
    manifests = tone_corpus(work, 24 if ctx.quick else 320, 4 if ctx.quick else 32)
    precision = "16-mixed" if ctx.cuda else "32-true"
    minutes, seconds = divmod(max(int(ctx.left()) - 30, 20), 60)  # Lightning stops itself within the time box
    spy = step_spy(count_syncs=ctx.cuda, first=8)
    build = training.build_trainer
    training.build_trainer = lambda config, out_dir: _with(build(config, out_dir), spy)
    overrides = [
        f"out_dir={work / 'run'}",
        f"data.train={manifests['train']}",
        f"data.val={manifests['dev']}",
        "tokenizer.kind=char",
        f"trainer.precision={precision}",
        "trainer.log_every_n_steps=5",
        f"trainer.max_epochs={1 if ctx.quick else 3}",
        f"trainer.max_time=00:00:{minutes:02d}:{seconds:02d}",
        f"data.max_batch_seconds={16 if ctx.quick else 48}",
        "data.batch_multiple=8",
        *ctx.overrides,
    ]
    start = time.perf_counter()
    try:
        cli(["train", "--config", str(ROOT / "configs" / "demo.yaml"), *overrides])
    except SystemExit as e:
        if e.code:
            raise RuntimeError(f"asr train exited with {e.code}") from None
    result = {
        "precision": precision,
        "wall_s": round(time.perf_counter() - start, 1),
        "lightning": pl.__version__,
        "ms_per_step_median": spy.median_ms(),
        "batch_sizes": spy.sizes(),
        "syncs": top_syncs(spy.syncs, spy.counted) if ctx.cuda else "skipped: no CUDA",
    }
    metrics = work / "run" / "logs" / "version_0" / "metrics.csv"
    shutil.copy(metrics, ctx.out / "train_metrics.csv")
    rows = list(csv.DictReader(open(metrics)))
    last = lambda key: next((float(r[key]) for r in reversed(rows) if r.get(key)), None)  # noqa: E731
    result.update(
        steps=int(max(float(r["step"]) for r in rows)) + 1,
        train_loss=last("train_loss"),
        val_wer=last("val_wer"),
        skipped_steps=last("skipped_steps"),
        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if ctx.cuda else None,
    )
    shutil.rmtree(work, ignore_errors=True)
    return result


def _with(trainer, callback):
    trainer.callbacks.append(callback)
    return trainer


def tone_corpus(root: Path, train: int, dev: int) -> dict:
    """Manifests of 1-4 s clips (two tones in noise) with random 2-6 letter words, 2 a second."""
    import numpy as np
    import soundfile as sf

    rng, letters, manifests = np.random.default_rng(0), list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), {}
    for split, n in (("train", train), ("dev", dev)):
        manifests[split] = root / f"{split}.jsonl"
        with open(manifests[split], "w") as f:
            for i in range(n):
                seconds = float(rng.uniform(1.0, 4.0))
                t = np.arange(int(seconds * 16000)) / 16000
                audio = sum(0.1 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) for _ in range(2))
                audio = (audio + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
                sf.write(root / f"{split}{i}.wav", audio, 16000)
                words = ["".join(rng.choice(letters, int(rng.integers(2, 7)))) for _ in range(max(1, int(2 * seconds)))]
                f.write(
                    json.dumps(
                        {
                            "id": f"{split}{i}",
                            "audio": str(root / f"{split}{i}.wav"),
                            "duration": seconds,
                            "text": " ".join(words),
                            "speaker": "s",
                        }
                    )
                    + "\n"
                )
    return manifests


def step_spy(count_syncs: bool, first: int):
    """A Lightning callback: the wall time between training batches and their sizes; with `count_syncs`,
    the synchronizing CUDA calls of SYNC_STEPS steps from global step `first` (progress bar and logging included)."""
    import pytorch_lightning as pl

    class StepSpy(pl.Callback):
        def __init__(self):
            self.times, self.batch_sizes, self.syncs, self.counted, self._counting = [], [], {}, 0, None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.times.append((trainer.current_epoch, time.perf_counter()))
            self.batch_sizes.append(len(batch["ids"]))
            if count_syncs and trainer.global_step == first:
                self._counting = counting_syncs(self.syncs)
                self._counting.__enter__()
            elif self._counting is not None and trainer.global_step == first + SYNC_STEPS:
                self._counting.__exit__(None, None, None)
                self._counting, self.counted = None, SYNC_STEPS

        def median_ms(self):
            gaps = sorted(b[1] - a[1] for a, b in zip(self.times, self.times[1:]) if a[0] == b[0])
            return round(1000 * gaps[len(gaps) // 2], 1) if gaps else None

        def sizes(self):
            n = len(self.batch_sizes)
            return {
                "batches": n,
                "mean": round(sum(self.batch_sizes) / max(n, 1), 1),
                "multiples_of_8": sum(b % 8 == 0 for b in self.batch_sizes),
            }

    return StepSpy()


SECTIONS = {  # name: (function, time limit in seconds, needs CUDA); run in this order
    "machine": (machine, 40, False),
    "bench_train": (bench_train, 170, False),
    "asr_train": (asr_train, 120, False),
    "step_shapes": (step_shapes, 110, False),
    "host_syncs": (host_syncs, 60, True),
    "profile": (profile, 60, False),
    "lstm_streams": (lstm_streams, 45, True),
}
FILES = ("results.json", "summary.md", "log.txt", "profile.txt", "trace.json.gz", "train_metrics.csv", "dmon.txt")


class Context:
    """What a section gets: the device, --quick, the output folder, config overrides, the seconds it has
    left, and `result`, which `save` hands to the parent as it grows (a section stopped at its time limit
    keeps what it had measured)."""

    def __init__(self, args):
        import torch

        self.torch, self.torch_device, self.cuda = torch, torch.device(args.device), args.device == "cuda"
        self.quick, self.out, self.overrides, self.path = args.quick, Path(args.out), args.override, Path(args.result)
        self.deadline, self.result = time.monotonic() + args.limit, {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self):
        self.path.write_text(json.dumps({"result": self.result}, default=str))


def run_child(args):
    ctx = Context(args)
    try:
        record = {"status": "ok", "result": SECTIONS[args.section][0](ctx)}
    except Exception as e:
        traceback.print_exc()
        record = {"status": f"error: {type(e).__name__}: {e}"[:600], "result": ctx.result}
    ctx.path.write_text(json.dumps(record, default=str))


def run_section(name, args, limit, log) -> dict:
    """Runs one section in a process group of its own; kills the group at `limit` seconds."""
    result = Path(tempfile.mkdtemp()) / f"{name}.json"
    cmd = [
        sys.executable,
        __file__,
        "--section",
        name,
        "--device",
        args.device,
        "--out",
        str(args.out),
        "--result",
        str(result),
        "--limit",
        str(max(limit - 15, 5)),
        *(["--quick"] if args.quick else []),
        *(["--override", *args.override] if args.override else []),
    ]
    start, timed_out = time.monotonic(), False
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, timed_out = proc.communicate()[0], True
    record = json.loads(result.read_text()) if result.exists() else {}
    shutil.rmtree(result.parent, ignore_errors=True)
    if timed_out:
        record["status"] = f"timeout after {limit:.0f} s"
    elif "status" not in record:
        record["status"] = f"error: exit code {proc.returncode}"
    elif proc.returncode:  # after the section had written its record (e.g. a crash at exit)
        record["exit_code"] = proc.returncode
    record["seconds"] = round(time.monotonic() - start, 1)
    if record["status"] != "ok":
        record["output_tail"] = output[-3000:]
    log.write(f"===== {name}: {record['status']} in {record['seconds']} s\n{output}\n")
    log.flush()
    return record


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda where there is one")
    p.add_argument("--quick", action="store_true", help="tiny model and shapes: a dry run of every section")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"), help="output folder (default: $OUT)")
    p.add_argument("--budget", type=float, default=420, help="seconds for all sections together")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections only")
    p.add_argument(
        "--override",
        nargs="+",
        default=[],
        help="config overrides for every section (the 960 h config, and the demo config of asr_train)",
    )
    p.add_argument("--install-log", help="a file to copy to the top of log.txt (the wheels' installation)")
    p.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)  # a child: run one section
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=float, default=60, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.section:
        return run_child(args)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    start, results = (
        time.monotonic(),
        {
            "device": args.device,
            "quick": args.quick,
            "budget_s": args.budget,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sections": {},
        },
    )
    with open(out / "log.txt", "w") as log:
        if args.install_log and Path(args.install_log).exists():
            log.write(f"===== wheels\n{Path(args.install_log).read_text()}\n")
        for name, (_, limit, needs_cuda) in SECTIONS.items():
            left = args.budget - (time.monotonic() - start)
            if args.only and name not in args.only:
                continue
            if needs_cuda and args.device != "cuda":
                record = {"status": "skipped: no CUDA"}
            elif left < 20:
                record = {"status": "skipped: out of time"}
            else:
                with gpu_monitor(out / "dmon.txt", name == "bench_train" and args.device == "cuda"):
                    record = run_section(name, args, min(limit, left), log)
            print(f"{name}: {record['status']}", flush=True)
            results["sections"][name] = record
            results["wall_s"] = round(time.monotonic() - start, 1)
            (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
            (out / "summary.md").write_text(summary(results))
    print(f"{results['wall_s']} s; results in {out}")
    failed = [n for n, r in results["sections"].items() if r["status"].startswith(("error", "timeout"))]
    return 1 if failed else 0


@contextlib.contextmanager
def gpu_monitor(path: Path, on: bool):
    """nvidia-smi dmon (power, clocks, utilisation, memory each second) into `path` during the block."""
    if not (on and shutil.which("nvidia-smi")):
        yield
        return
    with open(path, "w") as f:
        proc = subprocess.Popen(["nvidia-smi", "dmon", "-s", "pucm", "-d", "1"], stdout=f, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            proc.wait()


# ------------------------------------------------------------------------------------------ summary.md
def table(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + [
        "| " + " | ".join(str(row.get(k, "")).replace("|", "/") for k in keys) + " |" for row in rows
    ]


def sync_lines(syncs: dict) -> list[str]:
    return [f"{syncs['per_step']:.1f} host syncs per step, over {syncs['steps']} steps:", ""] + table(syncs["where"])


def summarize(name: str, r: dict) -> list[str]:
    if name == "machine":
        gpu = r.get("gpu") or {}
        return [
            f"- {gpu.get('name', 'no GPU')} (sm_{gpu.get('sm', '-')}, {gpu.get('sms', '-')} SMs, "
            f"{gpu.get('memory_gib', '-')} GiB); torch {r['torch']}, CUDA {r['cuda']}, cuDNN {r['cudnn']}, "
            f"Lightning {r['lightning']}; {r['cpus']} CPUs, /dev/shm {r['shm_free_gib']} GiB free",
            f"- nvidia-smi: {r.get('nvidia_smi', 'not found')}",
        ]
    if name == "bench_train":
        keys = (
            "x_real_time",
            "tflops",
            "share_of_peak",
            "padding",
            "utts_per_batch",
            "batches_multiple_of_8",
            "steps",
            "peak_gib",
        )
        rows = [
            {"path": path, **{k: round(v, 3) if isinstance(v := r[path][k], float) else v for k in keys}}
            for path in ("optimized", "baseline")
        ]
        head = f"{r['device_name']}, optimized path in {r['precision']}; speed-up {r['speedup']:.2f}x"
        return [head, ""] + table(rows)
    if name == "host_syncs":
        return sync_lines(r)
    if name == "asr_train":
        lines = [f"- {k}: {v}" for k, v in r.items() if k != "syncs"]
        return lines + ([""] + sync_lines(r["syncs"]) if isinstance(r["syncs"], dict) else [f"- syncs: {r['syncs']}"])
    if name == "profile":
        lines = []
        for shape in r.values():
            lines += (
                [
                    f"batch {shape['batch']} x {shape['seconds']} s: {shape['total_ms']} ms in all; persistent "
                    f"LSTM kernels: {shape['persist_kernels'] or 'none'}",
                    "",
                ]
                + table(shape["top"][:10])
                + [""]
            )
        return lines
    return table(r["rows"])  # step_shapes, lstm_streams


def summary(results: dict) -> str:
    lines = [
        f"# GPU check: {results['device']}{' (quick)' if results['quick'] else ''}, {results['started']}, "
        f"{results.get('wall_s', 0)} s",
        "",
    ]
    for name, record in results["sections"].items():
        lines += [f"## {name}: {record['status']}" + (f" ({record['seconds']} s)" if "seconds" in record else ""), ""]
        if record.get("result"):
            try:
                lines += summarize(name, record["result"])
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # a partial result: the JSON has it all
                lines.append(f"(partial result, see results.json: {type(e).__name__} {e})")
            lines.append("")
        if record.get("output_tail"):
            lines += ["```", record["output_tail"][-1500:], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
