// One live session: microphone -> AudioWorklet (16 kHz mono PCM16) -> WebSocket /v1/live,
// and the server's events back to the page through callbacks.
//
// Protocol: binary frames are audio; the text frame {"type":"stop"} ends the stream. The
// server sends {"type":"ready"}, then "partial" (the tail that may still change) and "final"
// (committed text) events, and after stop the last finals, {"type":"done"}, and closes.
// Errors come as {"type":"error","message":...} before the server closes.

const MAX_QUEUED_FRAMES = 100; // 10 s of audio kept while the server gets ready

function liveUrl(model, apiKey) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ model });
  if (apiKey) query.set("api_key", apiKey); // a browser cannot set headers on a WebSocket
  return `${scheme}//${location.host}/v1/live?${query}`;
}

function microphoneError(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Microphone access was refused: allow it for this page and try again.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No microphone was found.";
  }
  if (error.name === "NotReadableError") return "The microphone is busy or cannot be read.";
  return `Cannot open the microphone: ${error.message || error.name}.`;
}

export class LiveSession {
  constructor({ model, apiKey, onFinal, onPartial, onStatus, onEnd }) {
    Object.assign(this, { model, apiKey, onFinal, onPartial, onStatus, onEnd });
    this.queue = [];
    this.ready = false;
    this.opened = false;
    this.finished = false; // done, an error, or a local failure was reported
    this.ended = false;
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia || !window.AudioWorkletNode) {
      return this.fail("This browser gives no microphone access here (the page needs https or localhost).");
    }
    // Created before the first await, inside the click: browsers start audio only on a gesture.
    this.context = new AudioContext();
    this.onStatus("Opening the microphone…");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
      await this.context.audioWorklet.addModule("/static/pcm-worklet.js");
    } catch (error) {
      return this.fail(this.stream ? `Cannot start audio processing: ${error.message}` : microphoneError(error));
    }
    if (this.ended) return this.releaseAudio(true); // stopped while the browser asked for the microphone
    this.connectAudio();
    this.connectSocket();
  }

  connectAudio() {
    this.source = this.context.createMediaStreamSource(this.stream);
    this.worklet = new AudioWorkletNode(this.context, "pcm-downsampler");
    this.worklet.port.onmessage = (event) => this.onAudio(event.data);
    // Connected to the output (it writes silence) so that the graph pulls it on every browser.
    this.source.connect(this.worklet).connect(this.context.destination);
  }

  connectSocket() {
    this.onStatus("Connecting…");
    this.socket = new WebSocket(liveUrl(this.model, this.apiKey));
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => { this.opened = true; };
    this.socket.onmessage = (event) => this.onEvent(event.data);
    this.socket.onclose = (event) => this.onClose(event);
  }

  onAudio(data) {
    if (data === "flushed") return this.sendStop();
    if (this.ready && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(data);
    } else if (this.queue.length < MAX_QUEUED_FRAMES) {
      this.queue.push(data);
    }
  }

  onEvent(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return; // not ours: ignore
    }
    if (event.type === "ready") {
      this.ready = true;
      for (const frame of this.queue) this.socket.send(frame);
      this.queue = [];
      if (this.stopRequested) return this.sendStop();
      this.onStatus(`Listening with ${event.model ?? this.model}: speak now.`);
    } else if (event.type === "partial") {
      this.onPartial(event.text ?? "");
    } else if (event.type === "final") {
      this.onPartial("");
      if (event.text) this.onFinal(event.text);
    } else if (event.type === "done") {
      this.finished = true;
      this.onStatus("Done.");
      this.socket.close(1000);
    } else if (event.type === "error") {
      this.finished = true;
      this.onStatus(`The server stopped the stream: ${event.message}`, true);
    }
  }

  onClose(event) {
    if (!this.finished) {
      this.finished = true;
      if (!this.opened) {
        this.onStatus("The server refused the connection: check the API key and the profile.", true);
      } else {
        const reason = event.reason ? `: ${event.reason}` : "";
        this.onStatus(`The connection closed before the end (${event.code}${reason}).`, true);
      }
    }
    this.end();
  }

  // Stop recording: the audio still inside the worklet goes out first, then "stop"; the
  // server answers with its last finals and "done".
  stop() {
    this.releaseAudio(false);
    if (!this.worklet || !this.socket || this.socket.readyState !== WebSocket.OPEN) {
      if (!this.finished) this.onStatus("Stopped.");
      this.finished = true;
      return this.end();
    }
    this.onStatus("Finishing…");
    this.worklet.port.postMessage("flush");
    this.stopTimer = setTimeout(() => this.sendStop(), 1000); // if the worklet does not answer
  }

  sendStop() {
    clearTimeout(this.stopTimer);
    this.stopRequested = true; // not ready yet: sent once the queued audio has gone out
    if (!this.ready || this.stopSent || this.socket.readyState !== WebSocket.OPEN) return;
    this.stopSent = true;
    this.socket.send(JSON.stringify({ type: "stop" }));
  }

  releaseAudio(closeContext = true) {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.source?.disconnect();
    if (closeContext && this.context && this.context.state !== "closed") this.context.close();
  }

  fail(message) {
    this.finished = true;
    this.onStatus(message, true);
    this.end();
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.stopTimer);
    this.releaseAudio(true);
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    this.onEnd();
  }
}
