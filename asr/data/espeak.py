"""espeak-ng through its C API (ctypes), from the `espeakng-loader` wheel: the library and its data,
no system install. One initialised library per process; synthesis fills module-level buffers from the
callback, so a process speaks one sentence at a time (asr.data.synth runs each shard in its own process)."""

import ctypes
import os
import re

import espeakng_loader
import numpy as np

from asr.errors import ASRError


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h (API revision 12)
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_chunks, _word_events = [], []  # filled by the callback during one espeak_Synth call
_espeak = None  # this process's initialised library and its sample rate (22050 Hz)


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
def _on_audio(wav, n, events):  # module-level, so never garbage-collected while espeak holds it
    if wav and n > 0:
        _chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
    i = 0
    while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
        if events[i].type == 1:  # espeakEVENT_WORD: 1-based character position, time in ms
            _word_events.append((events[i].text_position, events[i].audio_position))
        i += 1
    return 0


def espeak_lib():
    global _espeak
    if _espeak is None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = os.path.dirname(espeakng_loader.get_data_path())  # the folder holding espeak-ng-data
        rate = lib.espeak_Initialize(2, 0, data_parent.encode(), 0)  # 2 = AUDIO_OUTPUT_SYNCHRONOUS
        if rate <= 0:
            raise ASRError("espeak-ng failed to initialise (is espeakng-loader installed?)")
        lib.espeak_SetSynthCallback(_on_audio)
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        _espeak = lib, rate
    return _espeak


def phonemes(word: str) -> str:
    lib, buf, out = espeak_lib()[0], ctypes.c_char_p(word.encode()), []
    while buf.value:
        out.append(lib.espeak_TextToPhonemes(ctypes.byref(buf), 1, 0).decode())
    return re.sub(r"[',;_! ]", "", "".join(out))  # without stress and pause marks


def synthesize(job) -> tuple[np.ndarray, int, list]:
    """espeak's audio (float32), its sample rate and each word's start in seconds (None: no event)."""
    lib, sr = espeak_lib()
    if lib.espeak_SetVoiceByName(job["voice"].encode()) != 0:
        raise ASRError(f"espeak-ng has no voice {job['voice']!r}")
    for param, value in ((1, job["rate"]), (3, job["pitch"]), (4, job["range"])):  # RATE, PITCH, RANGE
        lib.espeak_SetParameter(param, int(value), 0)
    ctypes.CDLL(None).srand(job["seed"])  # breath noise comes from libc rand() ...
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed(ctypes.c_long(job["seed"]))  # ... and from espeak's own generator
    _chunks.clear()
    _word_events.clear()
    spoken = job["spoken"].encode()
    lib.espeak_Synth(spoken, len(spoken) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
    audio = np.concatenate(_chunks).astype(np.float32) / 32768 if _chunks else np.zeros(0, np.float32)
    at = {pos: ms / 1000 for pos, ms in _word_events}
    return audio, sr, [at.get(m.start() + 1) for m in re.finditer(r"[a-z']+", job["spoken"])]
