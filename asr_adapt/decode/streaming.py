"""Streaming transcription: the options and a source-agnostic processor.

The processor keeps a growing buffer of recent audio, transcribes all of it at every step,
and commits what successive hypotheses agree on (:mod:`asr_adapt.decode.agreement`). What
is committed is never taken back; the rest is shown as a tentative tail.

The buffer must stay bounded (Whisper sees 30 s; each step re-reads the whole buffer), so
it is cut where the audio itself says a phrase ended:

* a pause (``pause_seconds`` of silence by the VAD after speech) ends a phrase: the buffer's
  whole hypothesis is committed and the buffer emptied (whisper_streaming's VAC mode);
* a buffer longer than ``trim_seconds`` (speech without such a pause) is cut in its latest
  short pause: the audio before the cut is transcribed once more and committed in full;
  past ``max_buffer_seconds`` it is cut at its quietest frame, pause or not.

Buffer stretches without speech are dropped without decoding: Whisper invents text for
silence, and decoding nothing costs time. Committed text before the buffer can be passed as
Whisper's prompt (``use_prompt``, off by default, see there).

:class:`StreamingProcessor` does not know where audio comes from: the microphone
(:mod:`asr_adapt.decode.live`), a file replayed in real time, or
:func:`~asr_adapt.decode.replay.run_deterministic`, which replays a recording at a fixed hop
per step (:mod:`asr_adapt.decode.replay`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.audio.vad import EnergyVad, VadOptions, frame_levels
from asr_adapt.core.errors import OptionsError
from asr_adapt.decode.agreement import LocalAgreement, align_prefix
from asr_adapt.models.options import WINDOW_LIMIT_SECONDS


@dataclass(frozen=True)
class StreamingOptions:
    """How the streaming policy behaves. Validated here, for the library and CLI alike."""

    #: Seconds of new audio between two decoding steps (exactly this in deterministic mode).
    hop_seconds: float = 1.0
    #: LocalAgreement-n: commit what the last n hypotheses agree on (2 as in whisper_streaming).
    agreement: int = 2
    #: Silence after speech that ends a phrase: commit it all and empty the buffer.
    pause_seconds: float = 0.5
    #: A buffer longer than this is cut at its latest short pause.
    trim_seconds: float = 15.0
    #: A buffer longer than this is cut at its quietest frame, pause or not.
    max_buffer_seconds: float = 25.0
    #: The shortest pause a long buffer may be cut in.
    cut_pause_seconds: float = 0.15
    #: Pass the committed text before the buffer to Whisper as its prompt. Off by default:
    #: every phrase starts a fresh buffer anyway, and with tiny.en a prompt often made
    #: Whisper stop early (a whole sentence came out as "He said,").
    use_prompt: bool = False
    #: Feed the words already committed from the buffer to the decoder as its hypothesis'
    #: start (decoders that support it: :class:`WhisperDecoder`) instead of decoding them
    #: again at every step. Off by default: measured side by side (BENCHMARKS.md), it saves
    #: 15% of a step (p50 latency 1.42 -> 1.34 s with a profile) but an unadapted model's
    #: mistakes, once forced, derail what follows (live WER +9% relative vs +0%).
    force_committed: bool = False
    #: How much of that text (characters, the most recent).
    prompt_chars: int = 200
    #: Less speech than this (seconds, by the VAD) in the buffer: nothing to decode.
    min_speech_seconds: float = 0.1
    vad: VadOptions = field(default_factory=VadOptions)

    def __post_init__(self) -> None:
        if not 0.1 <= self.hop_seconds <= 5.0:
            raise OptionsError(f"streaming hop must be between 0.1 and 5 seconds, got {self.hop_seconds}")
        if not isinstance(self.agreement, int) or not 1 <= self.agreement <= 5:
            raise OptionsError(f"agreement must be an integer from 1 to 5, got {self.agreement!r}")
        if not 0.1 <= self.pause_seconds <= 5.0:
            raise OptionsError(f"pause must be between 0.1 and 5 seconds, got {self.pause_seconds}")
        if not 2.0 <= self.trim_seconds < self.max_buffer_seconds <= WINDOW_LIMIT_SECONDS:
            raise OptionsError(f"need 2 <= trim seconds < max buffer seconds <= {WINDOW_LIMIT_SECONDS}, "
                               f"got {self.trim_seconds} and {self.max_buffer_seconds}")
        if not 0.02 <= self.cut_pause_seconds <= self.pause_seconds:
            raise OptionsError("cut pause must be between 0.02 s and the phrase pause")
        if self.prompt_chars < 0:
            raise OptionsError("prompt length must not be negative")
        if self.min_speech_seconds < 0:
            raise OptionsError("minimum speech must not be negative")


# --------------------------------------------------------------------------- decoding

#: Anything that turns a buffer (16 kHz mono float32) and a prompt into text. A decoder
#: whose ``forces_prefix`` attribute is true is also called with ``prefix=words``: the words
#: already committed from this buffer, which it must reproduce as its hypothesis' start.
Decoder = Callable[[np.ndarray, str], str]


# --------------------------------------------------------------------------- the processor


@dataclass(frozen=True)
class StreamUpdate:
    """What one processing step changed."""

    committed: tuple[str, ...] = ()   # words committed by this step, in order
    tentative: str = ""               # the uncommitted tail after this step
    phrase_ended: bool = False        # a pause (or the end) closed the current phrase
    decoded: bool = False             # Whisper ran in this step
    compute_seconds: float = 0.0      # wall time this step took
    cpu_seconds: float = 0.0          # CPU time of the calling thread (one core's worth of work)
    stream_seconds: float = 0.0       # audio received so far
    buffer_seconds: float = 0.0       # audio buffered after this step


class StreamingProcessor:
    """Turns a stream of audio blocks into committed text (see the module docstring).

    Feed it with :meth:`insert_audio`, call :meth:`process_iter` whenever :meth:`ready`
    (a hop of new audio arrived, or a phrase ended), and :meth:`finish` at the end. It is
    not thread-safe: one thread feeds and processes.
    """

    #: Silence kept after a phrase's last word when it is decoded (word endings fade out).
    PAUSE_CONTEXT_SECONDS = 0.2

    def __init__(self, decoder: Decoder, options: StreamingOptions | None = None) -> None:
        self.decoder = decoder
        self.options = options or StreamingOptions()
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new stream starts at sample 0."""
        self.vad = EnergyVad(self.options.vad)
        self.agreement = LocalAgreement(self.options.agreement)
        self._audio = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0
        self._decoded_until = 0
        self._phrases: list[list[str]] = []
        self._current: list[str] = []
        self.max_buffer_seconds_seen = 0.0
        self.decodes = 0

    # ----------------------------------------------------------------- state

    @property
    def stream_samples(self) -> int:
        return self._buffer_start + len(self._audio)

    @property
    def buffer_seconds(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    @property
    def pending_seconds(self) -> float:
        """Audio received since the last decision."""
        return (self.stream_samples - self._decoded_until) / SAMPLE_RATE

    def ready(self) -> bool:
        """Whether :meth:`process_iter` has something to do: a hop of new audio arrived, or
        a phrase has just ended in a pause (decided at once, not at the next hop, so that
        a phrase's last words do not wait for audio that is only silence)."""
        pending = self.pending_seconds
        if pending >= self.options.hop_seconds:
            return True
        if pending <= 0:
            return False
        return (self.vad.trailing_silence() >= self.options.pause_seconds
                and self.vad.has_speech(self._buffer_start, self.stream_samples, self.options.min_speech_seconds))

    @property
    def phrases(self) -> list[str]:
        """Committed text, one entry per phrase (the open phrase last, if any)."""
        phrases = [" ".join(words) for words in self._phrases]
        if self._current:
            phrases.append(" ".join(self._current))
        return phrases

    @property
    def text(self) -> str:
        """All committed text."""
        return " ".join(self.phrases)

    @property
    def tentative(self) -> str:
        return " ".join(self.agreement.tentative)

    def _prompt(self) -> str:
        if not self.options.use_prompt or not self.options.prompt_chars:
            return ""
        words = [w for phrase in self._phrases for w in phrase] + self._current
        before = words[:len(words) - len(self.agreement.committed)]  # text whose audio left the buffer
        return " ".join(before)[-self.options.prompt_chars:]

    # ----------------------------------------------------------------- feeding

    def insert_audio(self, block: np.ndarray) -> None:
        """Append a block (16 kHz mono float) to the stream."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if block.size:
            self._audio = np.concatenate([self._audio, block])
            self.vad.accept(block)

    def _decode(self, end: int | None = None) -> list[str]:
        audio = self._audio if end is None else self._audio[:end - self._buffer_start]
        self.decodes += 1
        self.max_buffer_seconds_seen = max(self.max_buffer_seconds_seen, len(audio) / SAMPLE_RATE)
        # Only a decode of the whole buffer may be forced: the committed words were heard in
        # all of it, and a shorter piece (a cut) may end before some of them.
        if end is None and self.options.force_committed and getattr(self.decoder, "forces_prefix", False):
            return self.decoder(audio, self._prompt(), prefix=self.agreement.committed).split()
        return self.decoder(audio, self._prompt()).split()

    def _drop_until(self, sample: int) -> None:
        sample = min(max(sample, self._buffer_start), self.stream_samples)
        self._audio = self._audio[sample - self._buffer_start:].copy()
        self._buffer_start = sample
        self.vad.forget_before(sample)

    def _commit(self, words: Sequence[str]) -> None:
        self._current.extend(words)

    def _end_phrase(self) -> None:
        if self._current:
            self._phrases.append(self._current)
        self._current = []

    # ----------------------------------------------------------------- steps

    def process_iter(self) -> StreamUpdate:
        """Decode the buffer (when it holds speech and new audio came) and apply the policy."""
        started = (time.perf_counter(), time.thread_time())
        end = self.stream_samples
        if end <= self._decoded_until:
            return self._update((), False, False, started)
        # ``_decoded_until`` moves only once a decision is complete: a step cut short
        # (Ctrl-C during decoding) leaves its audio to finish().
        if not self.vad.has_speech(self._buffer_start, end, self.options.min_speech_seconds):
            committed = self._skip_silence(end)
            return self._update(committed, bool(committed), False, started)
        early = tuple(self._bound())  # only when the processor fell far behind
        pause = self._phrase_pause(end)
        if pause is not None:
            committed = early + self._close_phrase(*pause)
            return self._update(committed, True, True, started)
        words = self._decode()
        committed = list(self.agreement.update(words))
        self._commit(committed)
        committed = list(early) + committed
        self._decoded_until = end
        if self.buffer_seconds > self.options.trim_seconds:
            committed += self._cut()
        return self._update(tuple(committed), False, True, started)

    def _skip_silence(self, end: int) -> tuple[str, ...]:
        """Nothing said up to ``end``: commit what is tentative (ending the phrase when there
        was some) and drop the audio but a short tail, which may hold a word's onset."""
        committed = tuple(self.agreement.flush())
        self._commit(committed)
        if committed:
            self._end_phrase()
        self.agreement.reset()
        self._drop_until(end - int(self.options.pause_seconds * SAMPLE_RATE))
        self._decoded_until = end
        return committed

    def _close_phrase(self, first: int, last: int) -> tuple[str, ...]:
        """A phrase is over at the pause ``first``..``last``: its audio is complete, so its
        hypothesis is final. Whisper sees the phrase and a little of the silence after it,
        never the next phrase. Returns the words newly committed."""
        tail = int(self.PAUSE_CONTEXT_SECONDS * SAMPLE_RATE)
        cut = min(last, first + tail)
        words = self._decode(cut)
        committed = tuple(self.agreement.update(words) + self.agreement.flush())
        self._commit(committed)
        self._end_phrase()
        self.agreement.reset()
        self._drop_until(max(cut, last - tail))
        # Audio after the pause is still to be decided on (a processor that fell
        # behind gets it at the next call, one phrase at a time).
        self._decoded_until = self._buffer_start
        return committed

    def _phrase_pause(self, end: int) -> tuple[int, int] | None:
        """The first pause of at least ``pause_seconds`` in the buffer that follows speech
        (pauses can fall between two steps: look at the whole buffer, not only its end)."""
        opts = self.options
        for first, last in self.vad.pauses(self._buffer_start, end, opts.pause_seconds):
            if self.vad.has_speech(self._buffer_start, first, opts.min_speech_seconds):
                return first, last
        return None

    def _cut(self) -> list[str]:
        """Cut a long buffer at its latest pause (or, past the hard limit, its quietest
        frame); commit all words before the cut. Returns the words newly committed."""
        opts = self.options
        start, end = self._buffer_start, self.stream_samples
        margin = SAMPLE_RATE  # leave a second on each side: a cut needs context
        # What is decoded must fit Whisper's window, even when a slow machine let the
        # buffer grow past it: cuts are looked for within the first max_buffer_seconds.
        limit = min(end - margin, start + int(opts.max_buffer_seconds * SAMPLE_RATE))
        pauses = self.vad.pauses(start + margin, limit, opts.cut_pause_seconds)
        if pauses:
            first, last = pauses[-1]
            cut = (first + last) // 2
        elif self.buffer_seconds > opts.max_buffer_seconds:
            frame = self.vad.options.frame_samples
            lo = int(opts.max_buffer_seconds * SAMPLE_RATE) // 2
            levels = frame_levels(self._audio[lo:limit - start], frame)
            cut = start + lo + (int(np.argmin(levels)) * frame if len(levels) else 0)
        else:
            return []
        words = self._decode(cut)
        used, position = align_prefix(self.agreement.committed, words)
        new = words[position:]
        self._commit(new)
        self.agreement.reset(self.agreement.committed[used:])
        self._drop_until(cut)
        return new

    def _bound(self) -> list[str]:
        """Cut until the buffer fits ``max_buffer_seconds`` (it only grows past it when the
        processor fell far behind its source). Returns the words newly committed."""
        committed: list[str] = []
        while self.buffer_seconds > self.options.max_buffer_seconds:
            before = self._buffer_start
            committed += self._cut()
            if self._buffer_start == before:
                break
        return committed

    def finish(self) -> StreamUpdate:
        """End of stream: decode what is left, commit everything, close the phrase."""
        started = (time.perf_counter(), time.thread_time())
        end = self.stream_samples
        early = self._bound()  # (these are committed already)
        decoded = bool(early)
        if end > self._decoded_until and self.vad.has_speech(self._buffer_start, end,
                                                             self.options.min_speech_seconds):
            committed = self.agreement.update(self._decode()) + self.agreement.flush()
            decoded = True
        else:
            committed = self.agreement.flush()
        self._decoded_until = end
        self._commit(committed)
        committed = early + committed
        self._end_phrase()
        self.agreement.reset()
        self._drop_until(end)
        return self._update(tuple(committed), True, decoded, started)

    def _update(self, committed, ended: bool, decoded: bool, started: tuple[float, float]) -> StreamUpdate:
        return StreamUpdate(committed=tuple(committed), tentative=self.tentative, phrase_ended=ended,
                            decoded=decoded, compute_seconds=time.perf_counter() - started[0],
                            cpu_seconds=time.thread_time() - started[1],
                            stream_seconds=self.stream_samples / SAMPLE_RATE,
                            buffer_seconds=self.buffer_seconds)


# --------------------------------------------------------------------------- deterministic replay


__all__ = ["Decoder", "StreamUpdate", "StreamingOptions", "StreamingProcessor"]
