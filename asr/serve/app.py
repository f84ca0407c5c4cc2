"""`asr serve`: a model behind the OpenAI audio API, with a web page at /.

    POST /v1/audio/transcriptions   multipart: file, model, response_format, timestamp_granularities[], language
    GET  /v1/models                 the one model loaded
    GET  /health                    {"status": "ok", ...}
    GET  /                          a page to upload or record audio and see (and play) each word

Starlette + uvicorn: the smallest well-kept ASGI pair that does this (FastAPI would add pydantic to the
runtime install for validation five form fields do not need). Limits come before work: at most --max-queue
requests are admitted at once (the rest get 503 with Retry-After), each body is refused past --max-file-mb
and its audio past --max-audio-minutes (asr.serve.upload), audio decoding runs at most one file per core,
and a request whose client has gone is cancelled, its network time given back.
"""

import contextlib
import hmac
import mimetypes
import os
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from asr.audio import SAMPLE_RATE
from asr.serve.batcher import Batcher
from asr.serve.guard import Guard
from asr.serve.openai_api import APIError, transcription_response
from asr.serve.upload import decode_audio, receive_upload
from asr.transcribe import join_windows, window_spans

STATIC = Path(__file__).parent / "static"
mimetypes.add_type("text/javascript", ".js")  # some systems' tables say otherwise; with nosniff that breaks the page


@dataclass(frozen=True)
class ServeOptions:
    max_file_mb: float = 25  # as OpenAI's API
    max_audio_minutes: float = 30
    max_queue: int = 32  # requests admitted at once (receiving, waiting, decoding); the rest: 503
    batching: bool = True
    batch_wait_ms: float = 0  # the first request of a batch waits this long for others (0: batch what is waiting)
    batch_seconds: float = 240  # audio per batch at most
    read_timeout_s: float = 60  # to receive a request's body
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    loopback_only: bool = True  # bound to a loopback address: answer only local Host names (asr.serve.guard)


def create_app(model, name: str, decoding, options: ServeOptions = ServeOptions()) -> Starlette:
    """model: an asr.transcribe.Model; name: what /v1/models calls it; decoding: DecodingOptions."""
    batcher = Batcher(model.emissions, options.batch_wait_ms / 1000, options.batch_seconds, options.batching)
    decode = model.decoder(decoding)  # a bad LM fails here, at start-up
    decode_lock = anyio.Lock() if decoding.beam else None  # flashlight's decoder keeps state per search
    decoders = anyio.CapacityLimiter(os.cpu_count() or 1)  # audio files decoded at once: bounds their memory
    admitted = 0
    started = int(time.time())

    def check_key(request):
        if options.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {options.api_key}".encode()):
            raise APIError(
                401, "Incorrect or missing API key: send the header 'Authorization: Bearer KEY'", code="invalid_api_key"
            )

    async def recognise(filename: str, data: bytes):
        wave = await anyio.to_thread.run_sync(decode_audio, data, filename, options.max_audio_minutes, limiter=decoders)
        spans = window_spans(len(wave), model.frame_samples)  # long audio in windows, as `asr transcribe`
        logits = join_windows(await batcher.emissions([wave[lo:hi] for lo, hi, _, _ in spans]), spans)
        args = (filename, logits, len(wave) / SAMPLE_RATE, decoding, decode)
        if decode_lock is None:
            return await anyio.to_thread.run_sync(model.result, *args)
        async with decode_lock:
            return await anyio.to_thread.run_sync(model.result, *args)

    async def transcriptions(request):
        nonlocal admitted
        check_key(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise APIError(400, "expected a multipart/form-data body with the audio in a field named 'file'", "file")
        if admitted >= options.max_queue:
            raise APIError(
                503,
                f"server busy: {admitted} requests in progress; retry shortly",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
        admitted += 1
        try:
            filename, data, fields = await receive_upload(request, options.max_file_mb, options.read_timeout_s)
            outcome = {}
            async with anyio.create_task_group() as tasks:

                async def work():  # errors are kept, not raised: a task group would wrap them in a group
                    try:
                        outcome["result"] = await recognise(filename, data)
                    except Exception as e:
                        outcome["error"] = e
                    tasks.cancel_scope.cancel()

                async def cancel_when_client_leaves():
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(work)
                tasks.start_soon(cancel_when_client_leaves)
            if "error" in outcome:
                raise outcome["error"]
            if "result" not in outcome:  # the client left: nobody to answer
                return Response(status_code=499)
            return transcription_response(outcome["result"], fields["response_format"], fields["granularities"])
        finally:
            admitted -= 1

    def model_card():
        return {"id": name, "object": "model", "created": started, "owned_by": "asr"}

    async def models(request):
        check_key(request)
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def one_model(request):
        check_key(request)
        if (asked := request.path_params["model"]) != name:
            raise APIError(
                404, f"The model '{asked}' does not exist; this server has '{name}'", "model", "model_not_found"
            )
        return JSONResponse(model_card())

    async def health(request):
        alive = batcher.thread.is_alive()
        return JSONResponse(
            {
                "status": "ok" if alive else "network thread stopped",
                "model": name,
                "auth": options.api_key is not None,
                "max_file_mb": options.max_file_mb,
                "max_audio_minutes": options.max_audio_minutes,
                "in_progress": admitted,
                "batches": batcher.batches,
                "batched_requests": batcher.requests,
            },
            status_code=200 if alive else 503,
        )

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def api_error(request, exc: APIError):
        return exc.response()

    async def http_error(request, exc: HTTPException):
        return APIError(exc.status_code, exc.detail or "error", headers=exc.headers).response()

    async def server_error(request, exc: Exception):
        return APIError(500, f"internal error ({type(exc).__name__}); the server goes on").response()

    middleware = [Middleware(Guard, loopback_only=options.loopback_only, cors_origins=options.cors_origins)]
    if options.cors_origins:  # "*" headers: the JavaScript SDKs send their own; no credentials are allowed
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(options.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await anyio.to_thread.run_sync(batcher.stop)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/models/{model:path}", one_model),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=middleware,
        exception_handlers={APIError: api_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
