"""The OpenAI audio API's shapes: transcription responses in each `response_format`, and errors.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "file", "code": "..."}}

is what OpenAI's SDKs turn into their own exception types (BadRequestError, AuthenticationError...), so
a client sees our one-line message wherever it would see OpenAI's.
"""

import math
import zlib

from starlette.responses import JSONResponse, PlainTextResponse, Response

from asr.writers import segments, to_srt, to_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
LANGUAGES = ("en", "english")  # ISO-639-1, and whisper's name for it


class APIError(Exception):
    """An error response in OpenAI's shape: raised anywhere in a request, rendered by the app."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def transcription_response(result, response_format: str, granularities: set[str]) -> Response:
    """A transcribe Result -> the response OpenAI sends for `response_format`."""
    if response_format == "json":
        return JSONResponse({"text": result.text, "usage": usage(result)})
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(to_srt(result.words), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(result.words), media_type="text/vtt")
    return JSONResponse(verbose(result, granularities))


def usage(result) -> dict:
    return {"type": "duration", "seconds": math.ceil(result.duration)}  # OpenAI bills whole seconds


def verbose(result, granularities: set[str]) -> dict:
    """verbose_json: segments unless only words were asked for (OpenAI's default is segments)."""
    body = {
        "task": "transcribe",
        "language": "english",
        "duration": round(result.duration, 3),
        "text": result.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = segment_list(result.words)
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)} for w in result.words]
    body["usage"] = usage(result)
    return body


def segment_list(words) -> list[dict]:
    """Words grouped at pauses (as subtitles are, asr.writers.segments) in OpenAI's segment shape. Fields a
    CTC model has no counterpart for are filled honestly: avg_logprob from the words' confidences,
    compression_ratio computed as whisper does, no_speech_prob 0 (a segment exists only where words were
    heard), seek 0, temperature 0 (decoding is deterministic), tokens empty."""
    out, i = [], 0
    for n, (start, end, text) in enumerate(segments(words)):
        count = len(text.split())
        confidences = [max(w.confidence, 1e-6) for w in words[i : i + count]]
        i += count
        raw = text.encode()
        out.append(
            {
                "id": n,
                "seek": 0,
                "start": round(start, 3),
                "end": round(end, 3),
                "text": text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": round(sum(map(math.log, confidences)) / max(1, len(confidences)), 4),
                "compression_ratio": round(len(raw) / max(1, len(zlib.compress(raw))), 4),
                "no_speech_prob": 0.0,
            }
        )
    return out
