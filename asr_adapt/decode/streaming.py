"""Streaming transcription with Whisper: the LocalAgreement policy and a source-agnostic processor.

Whisper transcribes whole windows, not streams. Following ufal/whisper_streaming, the
processor keeps a growing buffer of recent audio, transcribes all of it at every step, and
*commits* only the words that two successive hypotheses agree on (LocalAgreement-2): a word
that survived one more second of right context rarely changes again. What is committed is
never taken back; the rest is shown as a tentative tail.

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

:class:`StreamingProcessor` does not know where audio comes from: the microphone, a file
replayed in real time, or :func:`run_deterministic`, which feeds a fixed hop per step so
that results do not depend on the machine's speed, and keeps a simulated clock in which
each step's measured compute time is spent (for honest latency figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.models.options import WINDOW_LIMIT_SECONDS
from asr_adapt.models.repetition import normalize_word
from asr_adapt.core.errors import OptionsError
from asr_adapt.audio.vad import EnergyVad, VadOptions, frame_levels

#: Audio block size of the simulations (a microphone delivers 50 ms blocks).
BLOCK_SECONDS = 0.05


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


# --------------------------------------------------------------------------- the policy





def common_prefix(*hypotheses: Sequence[str]) -> int:
    """How many leading words all ``hypotheses`` share (compared by :func:`normalize_word`)."""
    if not hypotheses:
        return 0
    count = 0
    for words in zip(*hypotheses):
        if len({normalize_word(w) for w in words}) != 1:
            break
        count += 1
    return count


#: How far apart (in words) a committed word and its match in a new hypothesis may be.
ALIGN_SLACK = 2


def align_prefix(committed: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, int]:
    """Where ``committed`` ends in ``hypothesis``: ``(i, j)`` such that the first ``i``
    committed words correspond to the first ``j`` hypothesis words, and either all committed
    words (``i == len(committed)``) or all hypothesis words (``j == len(hypothesis)``) are used.

    A new hypothesis of the same buffer usually repeats the committed words exactly; when
    Whisper rewrites one of them (casing, a split word), the best fuzzy alignment decides.
    Matches more than :data:`ALIGN_SLACK` words apart are not trusted: the same audio gives
    about as many words each time, and a committed guess that was wrong ("I'll leave the
    alone" for "Are they alone to knit during the long") would otherwise align its "the"
    with a later "the" and swallow the words between.
    """
    c = [normalize_word(w) for w in committed]
    h = [normalize_word(w) for w in hypothesis]
    if h[:len(c)] == c:
        return len(c), len(c)
    if c[:len(h)] == h:
        return len(h), len(h)
    end_c = end_h = 0
    for a, b, size in SequenceMatcher(None, c, h, autojunk=False).get_matching_blocks():
        if size and abs(a - b) <= ALIGN_SLACK:
            end_c, end_h = a + size, b + size
    extra = min(len(c) - end_c, len(h) - end_h)  # unmatched words on both sides pair up
    return end_c + extra, end_h + extra


class LocalAgreement:
    """LocalAgreement-n over word hypotheses of one growing buffer.

    :meth:`update` takes the buffer's newest hypothesis and returns the words it commits:
    the longest prefix (after the words already committed) that the last ``n`` hypotheses
    agree on. :meth:`flush` commits the latest tentative words as they are (end of a phrase
    or of the stream). Committed words are in the newest hypothesis' spelling.
    """

    def __init__(self, n: int = 2) -> None:
        if n < 1:
            raise OptionsError("agreement needs at least one hypothesis")
        self.n = n
        self.committed: list[str] = []
        self._history: list[list[str]] = []

    @property
    def tentative(self) -> list[str]:
        """The newest hypothesis' words after the committed ones."""
        return list(self._history[-1]) if self._history else []

    def update(self, hypothesis: Sequence[str]) -> list[str]:
        """Add a hypothesis of the whole buffer; return the words newly committed."""
        _, start = align_prefix(self.committed, hypothesis)
        self._history.append(list(hypothesis[start:]))
        self._history = self._history[-self.n:]
        if len(self._history) < self.n:
            return []
        agreed = common_prefix(*self._history)
        new = self._history[-1][:agreed]
        self.committed.extend(new)
        self._history = [words[agreed:] for words in self._history]
        return new

    def flush(self) -> list[str]:
        """Commit the newest tentative words without waiting for agreement."""
        new = self.tentative
        self.committed.extend(new)
        self._history = []
        return new

    def reset(self, committed: Sequence[str] = ()) -> None:
        """Start over on a new buffer whose audio holds ``committed`` (already committed)."""
        self.committed = list(committed)
        self._history = []


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
        opts = self.options
        if not self.vad.has_speech(self._buffer_start, end, opts.min_speech_seconds):
            # Nothing said: drop the audio but a short tail, which may hold a word's onset.
            committed = tuple(self.agreement.flush())
            self._commit(committed)
            ended = bool(committed)
            if ended:
                self._end_phrase()
            self.agreement.reset()
            self._drop_until(end - int(opts.pause_seconds * SAMPLE_RATE))
            self._decoded_until = end
            return self._update(committed, ended, False, started)
        early = tuple(self._bound())  # only when the processor fell far behind
        pause = self._phrase_pause(end)
        if pause is not None:
            # A phrase is over: its audio is complete, so its hypothesis is final. Whisper
            # sees the phrase and a little of the silence after it, never the next phrase.
            first, last = pause
            tail = int(self.PAUSE_CONTEXT_SECONDS * SAMPLE_RATE)
            cut = min(last, first + tail)
            words = self._decode(cut)
            committed = tuple(self.agreement.update(words) + self.agreement.flush())
            self._commit(committed)
            self._end_phrase()
            self.agreement.reset()
            self._drop_until(max(cut, last - tail))
            committed = early + committed
            # Audio after the pause is still to be decided on (a processor that fell
            # behind gets it at the next call, one phrase at a time).
            self._decoded_until = self._buffer_start
            return self._update(committed, True, True, started)
        words = self._decode()
        committed = list(self.agreement.update(words))
        self._commit(committed)
        committed = list(early) + committed
        self._decoded_until = end
        if self.buffer_seconds > opts.trim_seconds:
            committed += self._cut()
        return self._update(tuple(committed), False, True, started)

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


@dataclass(frozen=True)
class CommittedWord:
    """A committed word and when: ``audio_time`` is how much audio the processor had
    received, ``commit_time`` the simulated clock (audio time plus the wall time compute
    took), ``cpu_commit_time`` the same clock run on the CPU time instead: what a core of
    its own would give when the machine is shared (exact for one torch thread)."""

    text: str
    audio_time: float
    commit_time: float
    cpu_commit_time: float = 0.0


@dataclass(frozen=True)
class StreamResult:
    """The outcome of :func:`run_deterministic`."""

    text: str
    phrases: tuple[str, ...]
    words: tuple[CommittedWord, ...]
    audio_seconds: float
    compute_seconds: float
    cpu_seconds: float
    steps: int
    decodes: int
    max_buffer_seconds: float
    options: StreamingOptions

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of audio (below 1: faster than real time)."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0


def run_deterministic(processor: StreamingProcessor, audio: np.ndarray,
                      on_update: Callable[[StreamUpdate], None] | None = None) -> StreamResult:
    """Stream ``audio`` through ``processor`` in 50 ms blocks, deciding when to step from the
    audio alone (a hop, or a phrase's end), whatever the wall clock.

    The text is reproducible (it depends only on the audio, the model and the options).
    Timing is simulated honestly: a step starts when its audio has arrived *and* the
    previous step has finished, and lasts the compute time it really took, so a processor
    slower than real time falls behind and its commit times show it.
    """
    return _simulate(processor, audio, catch_up=False, on_update=on_update)


def simulate_live(processor: StreamingProcessor, audio: np.ndarray,
                  on_update: Callable[[StreamUpdate], None] | None = None) -> StreamResult:
    """Like :func:`run_deterministic`, but each step takes *all* the audio that has arrived
    by the simulated clock (at least a hop), as :class:`~asr_adapt.live.LiveSession` does
    with a microphone: a slow machine decodes longer steps instead of falling further
    behind. Commit times are realistic; the text depends on the machine's speed."""
    return _simulate(processor, audio, catch_up=True, on_update=on_update)


def _simulate(processor: StreamingProcessor, audio: np.ndarray, catch_up: bool,
              on_update: Callable[[StreamUpdate], None] | None) -> StreamResult:
    processor.reset()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    clock = compute = 0.0
    steps = fed = 0
    words: list[CommittedWord] = []

    cpu_clock = cpu = 0.0

    def record(update: StreamUpdate, arrived: float) -> None:
        nonlocal clock, compute, steps, cpu_clock, cpu
        steps += 1
        compute += update.compute_seconds
        cpu += update.cpu_seconds
        clock = max(clock, arrived) + update.compute_seconds
        cpu_clock = max(cpu_clock, arrived) + update.cpu_seconds
        words.extend(CommittedWord(w, arrived, clock, cpu_clock) for w in update.committed)
        if on_update is not None:
            on_update(update)

    while fed < len(audio):
        # Audio comes in blocks, as from a microphone; a step runs when the processor is
        # ready (a hop of audio, or a phrase just ended). Catching up, a step also takes
        # all the audio that arrived while the previous one ran.
        until = fed + block
        if catch_up:
            until = max(until, int(clock * SAMPLE_RATE))
        until = min(len(audio), until)
        processor.insert_audio(audio[fed:until])
        fed = until
        if processor.ready():
            record(processor.process_iter(), fed / SAMPLE_RATE)
    record(processor.finish(), len(audio) / SAMPLE_RATE)
    return StreamResult(text=processor.text, phrases=tuple(processor.phrases), words=tuple(words),
                        audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=compute, cpu_seconds=cpu,
                        steps=steps,
                        decodes=processor.decodes, max_buffer_seconds=processor.max_buffer_seconds_seen,
                        options=processor.options)


__all__ = [
    "CommittedWord",
    "Decoder",
    "LocalAgreement",
    "StreamResult",
    "StreamUpdate",
    "StreamingOptions",
    "StreamingProcessor",
    
    "align_prefix",
    "common_prefix",
    "normalize_word",
    "run_deterministic",
    "simulate_live",
]
