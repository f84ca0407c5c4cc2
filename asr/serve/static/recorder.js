// AudioWorklet that forwards raw microphone samples to the main thread,
// where app.js collects them and encodes a WAV on stop.
class RecorderProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0 && input[0].length > 0) {
      // The render quantum buffer is reused by the engine, so send a copy.
      this.port.postMessage(input[0].slice(0));
    }
    return true;
  }
}

registerProcessor("recorder", RecorderProcessor);
