"""`asr serve` end to end: real servers on 127.0.0.1 (subprocesses), the official `openai` client, raw bad
requests, concurrent load, and the batcher on its own."""

import asyncio
import contextlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asr
from asr.data.manifest import read_manifest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model, *flags, tmp_dir: Path):
    """`asr serve --model MODEL FLAGS` in a subprocess whose temporary folder is `tmp_dir` -> (url, process)."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_dir)}
    log = open(tmp_dir.parent / f"serve-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr.cli", "serve", "--model", str(model), "--port", str(port), *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"asr serve exited: {Path(log.name).read_text()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"asr serve did not answer in 60 s: {Path(log.name).read_text()}")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    return [Path(r["audio"]) for r in read_manifest(tiny_corpus[1]["test"])]


@pytest.fixture(scope="module")
def expected(exported, clips):
    """`asr transcribe`'s text of each clip: what every server answer must equal."""
    model = asr.load_model(exported)
    return {str(path): model.transcribe(path).text for path in clips}


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-tmp")
    with running_server(exported, "--max-queue", "64", tmp_dir=tmp) as (url, proc):
        yield url, proc, tmp


@pytest.fixture(scope="module")
def strict_server(exported, tmp_path_factory):
    """With a key, a 0.05 MB file limit, a 20 s audio limit, and a queue of 2."""
    tmp = tmp_path_factory.mktemp("strict-tmp")
    flags = ("--api-key", "sekret", "--max-file-mb", "0.05", "--max-audio-minutes", "0.33", "--max-queue", "2")
    with running_server(exported, *flags, tmp_dir=tmp) as (url, proc):
        yield url, proc


def client(url, key="unused"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


def post(url, body: bytes, content_type="multipart/form-data; boundary=B", headers=None):
    """A raw POST to /v1/audio/transcriptions -> (status, parsed JSON or text)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": content_type, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode()


def multipart(fields: dict, file: tuple[str, bytes] | None) -> bytes:
    parts = [f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    if file:
        name, data = file
        head = f'--B\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    return b"".join(parts) + b"--B--\r\n"


def wav_bytes(seconds: float, seed=0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)), 16000, "PCM_16", format="WAV")
    return buf.getvalue()


def test_openai_client_every_response_format(server, clips, expected):
    url, _, _ = server
    path = clips[0]
    api = client(url)
    with open(path, "rb") as f:
        assert api.audio.transcriptions.create(model="whatever", file=f).text == expected[str(path)]
    with open(path, "rb") as f:
        assert api.audio.transcriptions.create(model="m", file=f, response_format="text").strip() == expected[str(path)]
    for fmt in ("srt", "vtt"):
        with open(path, "rb") as f:
            subtitles = api.audio.transcriptions.create(model="m", file=f, response_format=fmt)
        assert "-->" in subtitles and expected[str(path)].split()[0] in subtitles
    with open(path, "rb") as f:
        verbose = api.audio.transcriptions.create(
            model="m", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    duration = sf.info(str(path)).duration
    assert verbose.text == expected[str(path)] and verbose.language == "english"
    assert abs(verbose.duration - duration) < 0.01
    assert [w.word for w in verbose.words] == expected[str(path)].split()
    assert all(0 <= w.start <= w.end <= duration for w in verbose.words)
    assert all(a.start <= b.start for a, b in zip(verbose.words, verbose.words[1:]))
    assert " ".join(s.text for s in verbose.segments) == verbose.text
    assert verbose.segments[0].start == verbose.words[0].start
    with open(path, "rb") as f:  # segments only: OpenAI's default granularity
        only_segments = api.audio.transcriptions.create(model="m", file=f, response_format="verbose_json")
    assert only_segments.segments and only_segments.words is None


def test_models_health_and_page(server, exported):
    url, _, _ = server
    names = [m.id for m in client(url).models.list()]
    assert names == [exported.parent.name if exported.name == "model" else exported.name]
    assert client(url).models.retrieve(names[0]).id == names[0]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(url).models.retrieve("gpt-4o-transcribe")
    health = json.loads(urllib.request.urlopen(url + "/health").read())
    assert health["status"] == "ok" and health["auth"] is False
    page = urllib.request.urlopen(url + "/")
    assert "content-security-policy" in page.headers and b'id="transcript"' in page.read()
    script = urllib.request.urlopen(url + "/static/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_errors_are_the_sdks_own_types_with_our_message(server, clips):
    api = client(server[0])
    with pytest.raises(openai.BadRequestError, match="not a readable audio file") as e:
        api.audio.transcriptions.create(model="m", file=("noise.wav", b"\x00garbage" * 500))
    assert e.value.body["param"] == "file" and e.value.body["code"] == "invalid_audio"
    with open(clips[0], "rb") as f, pytest.raises(openai.BadRequestError, match="English only"):
        api.audio.transcriptions.create(model="m", file=f, language="fr")
    with open(clips[0], "rb") as f, pytest.raises(openai.BadRequestError, match="response_format 'xml'"):
        api.audio.transcriptions.create(model="m", file=f, response_format="xml")


def test_bad_requests_are_clean_4xx_and_the_server_goes_on(server, clips, expected):
    url, proc, _ = server
    wav = wav_bytes(2)
    bad = {
        "empty body": (b"", "multipart/form-data; boundary=B"),
        "not multipart": (b'{"file": "x"}', "application/json"),
        "no boundary": (multipart({}, ("a.wav", wav)), "multipart/form-data"),
        "missing file": (multipart({"model": "m"}, None), None),
        "garbage bytes": (multipart({}, ("a.wav", os.urandom(5000))), None),
        "truncated WAV": (multipart({}, ("a.wav", wav[:3000])), None),
        "empty file": (multipart({}, ("a.wav", b"")), None),
        "unknown response_format": (multipart({"response_format": "xml"}, ("a.wav", wav)), None),
        "granularity without verbose_json": (multipart({"timestamp_granularities[]": "word"}, ("a.wav", wav)), None),
        "broken multipart": (b"--B\r\nContent-Disposition: form-data; name=", None),
    }
    for what, (body, ctype) in bad.items():
        status, reply = post(url, body, ctype or "multipart/form-data; boundary=B")
        assert status == 400, (what, status, reply)
        assert set(reply["error"]) == {"message", "type", "param", "code"} and reply["error"]["message"], what
    assert "truncated WAV" in post(url, *bad["truncated WAV"][:1])[1]["error"]["message"]

    results = []
    threads = [
        threading.Thread(target=lambda b=body: results.append(post(url, b)[0]))
        for body, _ in list(bad.values())[3:8] * 10  # 50 bad requests at once
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [400] * 50 and proc.poll() is None
    path = clips[1]
    assert post(url, multipart({}, (path.name, path.read_bytes())))[1]["text"] == expected[str(path)]


def test_key_size_length_and_queue_limits(strict_server, clips, expected):
    url, _ = strict_server
    small = min(clips, key=lambda p: p.stat().st_size)
    assert small.stat().st_size < 0.05 * 2**20
    with open(small, "rb") as f, pytest.raises(openai.AuthenticationError, match="API key"):
        client(url, "wrong").audio.transcriptions.create(model="m", file=f)
    status, reply = post(url, multipart({}, ("a.wav", b"x")))  # no key at all
    assert status == 401 and reply["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.APIStatusError) as e:
        client(url, "sekret").audio.transcriptions.create(model="m", file=("big.wav", wav_bytes(3)))
    assert e.value.status_code == 413 and "0.05 MB" in e.value.message
    status, reply = post(url, multipart({}, ("big.wav", wav_bytes(10))), headers={"Authorization": "Bearer sekret"})
    assert status == 413 and reply["error"]["code"] == "file_too_large"  # refused on its Content-Length
    flac = io.BytesIO()  # 25 s of FLAC-compressed silence: under the size limit, over the 20 s one
    sf.write(flac, np.zeros(16000 * 25), 16000, format="FLAC")
    with pytest.raises(openai.APIStatusError, match="audio longer than") as e:
        client(url, "sekret").audio.transcriptions.create(model="m", file=("long.flac", flac.getvalue()))
    assert e.value.status_code == 413
    with open(small, "rb") as f:
        assert client(url, "sekret").audio.transcriptions.create(model="m", file=f).text == expected[str(small)]

    # A queue of 2: of many slow senders at once, those past the second are refused with Retry-After.
    host, port = url.removeprefix("http://").split(":")
    slow = []
    for _ in range(2):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/v1/audio/transcriptions")
        for k, v in {"Authorization": "Bearer sekret", "Content-Type": "multipart/form-data; boundary=B"}.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", "1000")
        conn.endheaders(b"--B\r\n")  # then nothing more: both stay admitted
        slow.append(conn)
    for _ in range(100):  # until both are admitted
        if json.loads(urllib.request.urlopen(url + "/health").read())["in_progress"] == 2:
            break
        time.sleep(0.1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v1/audio/transcriptions", multipart({}, ("a.wav", b"x")), {
        "Authorization": "Bearer sekret", "Content-Type": "multipart/form-data; boundary=B"})  # fmt: skip
    busy = conn.getresponse()
    assert busy.status == 503 and busy.getheader("Retry-After") == "1"
    assert json.loads(busy.read())["error"]["code"] == "server_busy"
    for c in slow:
        c.close()


def test_foreign_hosts_and_origins_are_refused(server, clips, expected):
    """Bound to loopback: a rebinding Host is refused; so is a page of another origin, unless allowed."""
    url, path = server[0], clips[0]
    body = multipart({}, (path.name, path.read_bytes()))
    status, reply = post(url, body, headers={"Host": "attacker.example:8000"})
    assert status == 400 and reply["error"]["code"] == "invalid_host"
    status, reply = post(url, body, headers={"Origin": "http://attacker.example"})
    assert status == 403 and "--cors-origin" in reply["error"]["message"]
    status, reply = post(url, body, headers={"Origin": url})  # the server's own page
    assert status == 200 and reply["text"] == expected[str(path)]


def test_long_audio_is_windowed_as_transcribe_does(server, exported, clips, tmp_path):
    """70 s of the test clips one after another: the server's windows join as `asr transcribe`'s do."""
    waves = [asr.load_audio(p) for p in clips]
    long = np.concatenate([np.concatenate(waves)] * int(np.ceil(70 * 16000 / sum(map(len, waves)))))
    path = tmp_path / "long.flac"
    sf.write(path, long, 16000)
    text = asr.load_model(exported).transcribe(path).text
    with open(path, "rb") as f:
        assert client(server[0]).audio.transcriptions.create(model="m", file=f).text == text


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.slow
def test_load_sixteen_clients(server, clips, expected):
    """16 clients posting for 10 s: no errors, every text equal to `asr transcribe`'s, memory bounded,
    no temporary files left behind."""
    url, proc, tmp = server
    bodies = [(str(p), multipart({"model": "m"}, (p.name, p.read_bytes()))) for p in clips]
    post(url, bodies[0][1])  # the server's first requests settle its memory
    before, files_before = rss_mb(proc.pid), set(tmp.iterdir())  # onnxruntime keeps a session file there
    latencies, failures, stop = [], [], time.monotonic() + 10

    def client_loop(i):
        n = i
        while time.monotonic() < stop:
            path, body = bodies[n % len(bodies)]
            started = time.monotonic()
            status, reply = post(url, body)
            latencies.append(time.monotonic() - started)
            if status != 200 or reply["text"] != expected[path]:
                failures.append((status, reply))
            n += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\n16 clients, 10 s: {len(latencies) / 10:.1f} requests/s, p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    assert len(latencies) >= 16
    assert rss_mb(proc.pid) - before < 200
    health = json.loads(urllib.request.urlopen(url + "/health").read())
    assert health["batched_requests"] > health["batches"]  # requests that arrived together shared a pass
    assert set(tmp.iterdir()) == files_before


def test_batcher_fuses_waiting_requests_and_isolates_a_bad_one():
    from asr.serve.batcher import Batcher

    calls = []

    def emissions(waves):
        calls.append(len(waves))
        if any(len(w) == 13 for w in waves):
            raise ValueError("bad wave")
        return [np.full((2, 3), len(w), np.float32) for w in waves]

    async def main(batching):
        batcher = Batcher(emissions, wait_s=0.05, batching=batching).start()
        jobs = [batcher.emissions([np.zeros(n, np.float32)]) for n in (100, 200, 13, 300)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        batcher.stop()
        return out

    out = asyncio.run(main(True))
    assert [o[0][0, 0] for o in out if not isinstance(o, Exception)] == [100, 200, 300]
    assert isinstance(out[2], ValueError)
    assert calls == [4, 1, 1, 1, 1]  # one fused pass, then each alone after the bad wave broke it
    calls.clear()
    out = asyncio.run(main(False))
    assert calls == [1, 1, 1, 1] and isinstance(out[2], ValueError)


def chromium():
    """Headless Chromium driven by Selenium, both from the system (Debian: apt-get install chromium
    chromium-driver; CI's script installs them), so nothing is downloaded."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("the browser test needs chromium and its driver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def test_web_page_in_a_real_browser(server, clips, expected, tmp_path_factory):
    """Upload a clip on the page: the words and their times are those of the API; clicking a word seeks the
    player there; the page breaks no rule of its Content-Security-Policy. A screenshot is kept."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, path = server[0], clips[0]
    with open(path, "rb") as f:
        api = client(url).audio.transcriptions.create(
            model="m", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    browser = chromium()
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "model").text not in ("", "…"))
        browser.find_element(By.ID, "file").send_keys(str(path.resolve()))  # the driver wants a canonical path
        browser.find_element(By.ID, "send").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#transcript .word"))
        buttons = browser.find_elements(By.CSS_SELECTOR, "#transcript .word")
        shown = [
            (
                b.find_element(By.CSS_SELECTOR, ".w").text,
                float(b.get_attribute("data-start")),
                float(b.get_attribute("data-end")),
            )
            for b in buttons
        ]
        assert [w for w, _, _ in shown] == expected[str(path)].split()
        assert [(s, e) for _, s, e in shown] == [(w.start, w.end) for w in api.words]
        assert browser.find_element(By.ID, "text").text == expected[str(path)]
        assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
        buttons[-1].click()
        WebDriverWait(browser, 10).until(
            lambda b: abs(b.execute_script("return document.getElementById('player').currentTime") - shown[-1][1]) < 0.3
        )
        shot = tmp_path_factory.getbasetemp() / "serve-page.png"
        browser.save_screenshot(str(shot))
        print(f"\nscreenshot of the page: {shot}")
        assert shot.stat().st_size > 10_000
        problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not problems, problems
    finally:
        browser.quit()


def test_uploads_decode_in_memory_within_limits():
    from asr.audio import AudioTooLong, decode_bytes

    wav = wav_bytes(2)
    assert len(decode_bytes(wav, "a.wav")) == 32000
    with pytest.raises(asr.ASRError, match=r"a.wav: truncated WAV: its header promises 64000 bytes"):
        decode_bytes(wav[:5000], "a.wav")
    with pytest.raises(AudioTooLong, match="longer than 1.5 s"):
        decode_bytes(wav, "a.wav", max_seconds=1.5)
    assert len(decode_bytes(wav, "a.wav", max_seconds=2.5)) == 32000
    with pytest.raises(asr.ASRError, match="empty"):
        decode_bytes(b"", "a.wav")
    with pytest.raises(asr.ASRError, match="^passwd: not a readable audio file"):
        decode_bytes(b"\x00" * 3000, "/etc/passwd")  # a name from a request is only ever a label


def test_hosts_that_count_as_local():
    from asr.serve.guard import hostname, is_loopback

    assert [is_loopback(hostname(h) or "") for h in ("localhost:8000", "127.0.0.2", "[::1]:80", "[::1")] == [
        True,
        True,
        True,
        False,
    ]
    assert not is_loopback(hostname("attacker.example:8000")) and not is_loopback(hostname("0.0.0.0"))


def test_serve_warns_when_listening_beyond_this_machine_without_a_key(exported, monkeypatch):
    import uvicorn

    from asr.serve import serve

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw, app=app))
    lines = []
    serve(exported, host="0.0.0.0", port=9, log=lines.append)
    assert started["host"] == "0.0.0.0" and any(line.startswith("warning: listening on 0.0.0.0") for line in lines)
    lines.clear()
    serve(exported, host="127.0.0.1", port=9, log=lines.append)
    assert not any("warning" in line for line in lines)
