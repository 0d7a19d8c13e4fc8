// AudioWorklet processor: the microphone, downmixed to mono and resampled to 16 kHz, posted
// to the page as little-endian PCM16 frames of 100 ms (what WebSocket /v1/live takes).
//
// The browser's AudioContext runs at the device rate (44.1 or 48 kHz, sometimes more);
// asking it for 16 kHz is not supported everywhere, so the resampling happens here: each
// output sample is the mean of the input samples it covers (a box filter, enough against
// aliasing for speech recognition), with a fractional position carried between blocks.

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 1600; // 100 ms at 16 kHz

class PcmDownsampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample (>= 1)
    this.position = 0;   // where the next output sample ends, in input samples from `sum`'s start
    this.sum = 0;        // input samples summed towards the next output sample
    this.count = 0;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data !== "flush") return;
      this.flush();
      this.port.postMessage("flushed"); // after the last frame: the page may now send "stop"
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input yet (or muted)
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      let value = 0;
      for (let c = 0; c < channels.length; c++) value += channels[c][i];
      this.sum += value / channels.length;
      this.count += 1;
      if (this.count >= this.step - this.position) {
        this.push(this.sum / this.count);
        this.position = this.count - (this.step - this.position);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }

  push(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    if (this.filled === FRAME_SAMPLES) this.flush();
  }

  flush() {
    if (this.filled === 0) return;
    const out = this.frame.slice(0, this.filled); // Int16Array: little-endian on every browser platform
    this.port.postMessage(out.buffer, [out.buffer]);
    this.filled = 0;
  }
}

registerProcessor("pcm-downsampler", PcmDownsampler);
