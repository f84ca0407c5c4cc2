"""One transcription request's body: read within limits, its fields checked, its audio decoded.

Every problem is an APIError in OpenAI's shape naming the field, with the one-line message the CLI would
print. The body is counted as it arrives and refused past the limit (uvicorn then reads and discards the
rest, so the client hears the 413 rather than a dropped connection); the upload's bytes are held in memory
(Starlette spools a file over 1 MB to an unlinked temporary file, closed here before decoding).
"""

from pathlib import Path

import anyio
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from asr.audio import AudioTooLong, decode_bytes
from asr.errors import ASRError
from asr.serve.openai_api import GRANULARITIES, LANGUAGES, RESPONSE_FORMATS, APIError

MB = 1 << 20
FORM_OVERHEAD = 64 * 1024  # multipart headers and the small fields beside the file


def too_large(max_file_mb: float) -> APIError:
    return APIError(
        413, f"file too large: the limit is {max_file_mb:g} MB (asr serve --max-file-mb)", "file", "file_too_large"
    )


async def receive_upload(request, max_file_mb: float, timeout_s: float) -> tuple[str, bytes, dict]:
    """The multipart body -> (the file's name, its bytes, the checked fields)."""
    limit = int(max_file_mb * MB)
    if int(request.headers.get("content-length") or 0) > limit + FORM_OVERHEAD:
        raise too_large(max_file_mb)

    async def counted():
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + FORM_OVERHEAD:
                raise too_large(max_file_mb)
            yield chunk

    parser = MultiPartParser(request.headers, counted(), max_files=1, max_fields=16, max_part_size=FORM_OVERHEAD)
    try:
        with anyio.fail_after(timeout_s):
            form = await parser.parse()
    except MultiPartException as e:
        raise APIError(400, f"malformed multipart body: {e}", "file") from None
    except TimeoutError:
        raise APIError(408, f"the request body took over {timeout_s:g} s to arrive") from None
    except ClientDisconnect:
        raise APIError(400, "the client disconnected before sending the whole body") from None
    try:
        fields = check_fields(form)
        data = await form["file"].read()
        name = Path(form["file"].filename or "upload").name  # a name for messages, never a path opened
    finally:
        await form.close()
    if len(data) > limit:
        raise too_large(max_file_mb)
    return name, data, fields


def check_fields(form) -> dict:
    """The form's fields -> {"response_format", "granularities"}; a bad one is a 400 naming it."""
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise APIError(400, "no audio: send it as a file in a field named 'file'", "file")
    fmt = form.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise APIError(
            400, f"response_format {fmt!r}: expected one of {', '.join(RESPONSE_FORMATS)}", "response_format"
        )
    granularities = set(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
    if bad := granularities - set(GRANULARITIES):
        raise APIError(
            400, f"timestamp_granularities {sorted(bad)}: expected word and/or segment", "timestamp_granularities"
        )
    if granularities and fmt != "verbose_json":
        raise APIError(400, "timestamp_granularities needs response_format verbose_json", "timestamp_granularities")
    language = (form.get("language") or "en").lower()
    if language not in LANGUAGES:
        raise APIError(400, f"language {language!r}: this model transcribes English only (en)", "language")
    if (form.get("stream") or "false").lower() == "true":
        raise APIError(400, "streaming responses are not supported: leave stream unset", "stream")
    return {"response_format": fmt, "granularities": granularities}


def decode_audio(data: bytes, filename: str, max_audio_minutes: float):
    """Bytes -> 16 kHz wave; never decodes more than the limit's worth of audio."""
    try:
        return decode_bytes(data, filename, max_seconds=max_audio_minutes * 60)
    except AudioTooLong:
        raise APIError(
            413,
            f"audio longer than {max_audio_minutes:g} minutes (asr serve --max-audio-minutes)",
            "file",
            "audio_too_long",
        ) from None
    except ASRError as e:
        raise APIError(400, str(e), "file", "invalid_audio") from None
