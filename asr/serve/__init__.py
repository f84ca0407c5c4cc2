"""`asr serve`: the OpenAI audio API and a web page in front of a model (asr.serve.app).

    asr serve --model runs/demo/model            # http://127.0.0.1:8000/ and /v1/audio/transcriptions

Needs the serve extra (`pip install "asr[serve]"`: starlette, uvicorn, python-multipart); an exported
model needs no PyTorch, so it runs on the light runtime install.
"""

from pathlib import Path

from asr.errors import ASRError


def model_name(path) -> str:
    """What /v1/models calls the model: its folder's name (the run's, for runs/NAME/model or a checkpoint)."""
    path = Path(path).resolve()
    if path.is_file():  # RUN/checkpoints/best.ckpt
        from asr.runs import run_of

        return run_of(path).name
    return path.parent.name if path.name == "model" else path.name


def serve(
    model_path,
    host: str = "127.0.0.1",
    port: int = 8000,
    decoding=None,
    options=None,
    name=None,
    device: str = "auto",
    log=print,
) -> None:
    """Load the model, warm it up, and answer HTTP on host:port until interrupted."""
    try:
        import uvicorn

        from asr.serve.app import ServeOptions, create_app
        from asr.serve.guard import is_loopback
    except ImportError as e:
        raise ASRError(f'asr serve needs the serve extra ({e.name} is missing): pip install "asr[serve]"') from None
    import dataclasses

    import numpy as np

    from asr.audio import SAMPLE_RATE
    from asr.decoding import decoding_options
    from asr.transcribe import load_model

    model = load_model(model_path, device)
    model.emissions([np.zeros(SAMPLE_RATE, np.float32)])  # the first request should not pay for start-up
    loopback = is_loopback(host)
    options = dataclasses.replace(options or ServeOptions(), loopback_only=loopback)
    name = name or model_name(model_path)
    app = create_app(model, name, decoding or decoding_options(), options)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    log(f"asr serve: {name} ({model_path}, on {model.device}) at {url}/ (web page) and {url}/v1 (OpenAI audio API)")
    if not loopback and options.api_key is None:
        log(f"warning: listening on {host} without --api-key: anyone who can reach this address can use it")
    # uvicorn's own cap on open connections is a backstop past ours (plain 503s); shutdown waits 5 s at most
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=options.max_queue + 100,
        timeout_graceful_shutdown=5,
    )
