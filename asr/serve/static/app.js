"use strict";

// Page logic for the asr server. Loaded with `defer`, so the DOM is ready.
// No inline scripts or handlers: the server's CSP forbids them.

const $ = (id) => document.getElementById(id);
const els = {
  model: $("model"), keyField: $("api-key-field"), key: $("api-key"),
  file: $("file"), send: $("send"), record: $("record"), status: $("status"),
  player: $("player"), transcript: $("transcript"), text: $("text"), curl: $("curl"),
};

const state = { health: null, busy: false, recorder: null, playerUrl: null, playerBlob: null, words: [], current: null };

function setStatus(message, isError = false) {
  els.status.textContent = message;
  els.status.classList.toggle("error", isError);
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function updateButtons() {
  els.send.disabled = state.busy || state.recorder !== null;
  els.record.disabled = state.busy || !canRecord();
}

// getUserMedia and AudioWorklet only exist in secure contexts (https, localhost).
function canRecord() {
  return Boolean(window.isSecureContext && navigator.mediaDevices &&
    navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
}

function setPlayerSource(blob) {
  if (blob === state.playerBlob) return; // keep the player's position and buffer
  state.playerBlob = blob;
  if (state.playerUrl) URL.revokeObjectURL(state.playerUrl);
  state.playerUrl = URL.createObjectURL(blob);
  els.player.src = state.playerUrl;
}

async function loadHealth() {
  try {
    const res = await fetch("/health", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state.health = await res.json();
    els.model.textContent = state.health.model || "(unknown)";
    const auth = Boolean(state.health.auth);
    els.keyField.hidden = !auth;
    els.key.hidden = !auth;
    if (auth) els.curl.textContent = els.curl.textContent.replace(
      "curl ", 'curl -H "Authorization: Bearer $ASR_API_KEY" ');
  } catch (err) {
    els.model.textContent = "(unavailable)";
    setStatus(`Server health check failed: ${err.message}`, true);
  }
}

async function transcribe(blob, name) {
  const maxMb = state.health && state.health.max_file_mb;
  if (maxMb && blob.size > maxMb * 1024 * 1024) {
    setStatus(`${name} is ${formatSize(blob.size)}; the limit is ${maxMb} MB.`, true);
    return;
  }
  const form = new FormData();
  form.append("file", blob, name);
  if (state.health && state.health.model) form.append("model", state.health.model);
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  form.append("timestamp_granularities[]", "segment");

  const headers = {};
  const key = els.key.value.trim();
  if (state.health && state.health.auth && key) headers.Authorization = `Bearer ${key}`;

  state.busy = true;
  updateButtons();
  setStatus(`Transcribing ${name} (${formatSize(blob.size)})...`);
  const t0 = performance.now();
  try {
    const res = await fetch("/v1/audio/transcriptions", { method: "POST", body: form, headers });
    // Proxies may answer with HTML, so don't assume the body is JSON.
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const msg = body && body.error && body.error.message;
      throw new Error(msg || `HTTP ${res.status} ${res.statusText}`);
    }
    if (!body) throw new Error("The server returned an unreadable response.");
    const elapsed = (performance.now() - t0) / 1000;
    showResult(body);
    const dur = typeof body.duration === "number" ? `${body.duration.toFixed(1)} s of audio` : "Done";
    setStatus(`${dur} in ${elapsed.toFixed(2)} s`);
  } catch (err) {
    setStatus(err.message || String(err), true);
  } finally {
    state.busy = false;
    updateButtons();
  }
}

function showResult(result) {
  els.transcript.replaceChildren();
  state.words = [];
  state.current = null;
  for (const w of result.words || []) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "word";
    btn.dataset.start = String(w.start);
    btn.dataset.end = String(w.end);
    const word = document.createElement("span");
    word.className = "w";
    word.textContent = w.word;
    const time = document.createElement("span");
    time.className = "t";
    time.textContent = Number(w.start).toFixed(2);
    btn.append(word, time);
    els.transcript.append(btn);
    state.words.push({ el: btn, start: Number(w.start), end: Number(w.end) });
  }
  if (state.words.length === 0) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "(no speech recognised)";
    els.transcript.append(p);
  }
  els.text.textContent = result.text || "";
}

function highlight() {
  const t = els.player.currentTime;
  const hit = state.words.find((w) => t >= w.start && t < w.end) || null;
  const el = hit && hit.el;
  if (el === state.current) return;
  if (state.current) state.current.classList.remove("current");
  if (el) el.classList.add("current");
  state.current = el;
}

// Raw PCM in a hand-written RIFF header: every browser and the server can read
// it, unlike MediaRecorder's container formats which differ per browser.
function encodeWav(chunks, sampleRate) {
  const length = chunks.reduce((n, c) => n + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + length * 2));
  const ascii = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  ascii(0, "RIFF"); view.setUint32(4, 36 + length * 2, true); ascii(8, "WAVE");
  ascii(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); view.setUint32(24, sampleRate, true);           // mono
  view.setUint32(28, sampleRate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  ascii(36, "data"); view.setUint32(40, length * 2, true);
  let offset = 44;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) {
      const s = Math.max(-1, Math.min(1, chunk[i]));
      view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([view], { type: "audio/wav" });
}

async function startRecording() {
  // Browser voice processing is tuned for calls and hurts recognition.
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const ctx = new AudioContext();
  try {
    await ctx.audioWorklet.addModule("/static/recorder.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "recorder");
    const chunks = [];
    // Stop at the server's limit on audio length: nothing longer would be accepted anyway.
    const minutes = (state.health && state.health.max_audio_minutes) || 30;
    const limit = minutes * 60 * ctx.sampleRate;
    let samples = 0;
    node.port.onmessage = (e) => {
      chunks.push(e.data);
      samples += e.data.length;
      if (samples >= limit && state.recorder && !state.recorder.stopping) {
        state.recorder.stopping = true;
        els.record.click();
      }
    };
    source.connect(node);
    // Some engines only run nodes that reach the destination; the output is silent.
    node.connect(ctx.destination);
    await ctx.resume();
    state.recorder = { stream, ctx, source, node, chunks };
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    throw err;
  }
}

async function stopRecording() {
  const { stream, ctx, source, node, chunks } = state.recorder;
  state.recorder = null;
  source.disconnect();
  node.disconnect();
  node.port.onmessage = null;
  stream.getTracks().forEach((t) => t.stop());
  const sampleRate = ctx.sampleRate;
  await ctx.close();
  if (chunks.length === 0) throw new Error("No audio was recorded.");
  const file = new File([encodeWav(chunks, sampleRate)], "recording.wav", { type: "audio/wav" });
  setPlayerSource(file);
  return file;
}

els.record.addEventListener("click", async () => {
  try {
    if (state.recorder) {
      els.record.disabled = true; // no restart while the old context closes
      els.record.textContent = "Record";
      els.record.setAttribute("aria-pressed", "false");
      const file = await stopRecording();
      updateButtons();
      await transcribe(file, file.name);
    } else {
      setStatus("");
      await startRecording();
      els.record.textContent = "Stop";
      els.record.setAttribute("aria-pressed", "true");
      setStatus("Recording... press Stop to transcribe.");
    }
  } catch (err) {
    setStatus(`Recording failed: ${err.message || err}`, true);
  }
  updateButtons();
});

els.send.addEventListener("click", () => {
  const file = els.file.files && els.file.files[0];
  if (!file) {
    setStatus("Choose an audio file first.", true);
    els.file.focus();
    return;
  }
  setPlayerSource(file);
  transcribe(file, file.name);
});

els.file.addEventListener("change", () => {
  const file = els.file.files && els.file.files[0];
  if (file) setPlayerSource(file);
});

els.transcript.addEventListener("click", (e) => {
  const btn = e.target.closest("button.word");
  if (!btn) return;
  els.player.currentTime = Number(btn.dataset.start);
  // play() rejects if the media can't play; the seek is still useful.
  els.player.play().catch(() => {});
});

els.player.addEventListener("timeupdate", highlight);
els.player.addEventListener("seeked", highlight);

els.curl.textContent = `curl -F file=@clip.wav ${location.protocol}//${location.host}/v1/audio/transcriptions`;
if (!canRecord()) els.record.title = "Recording needs a secure context: open this page over https or on localhost.";
updateButtons();
loadHealth();
