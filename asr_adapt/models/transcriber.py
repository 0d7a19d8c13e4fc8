"""Offline transcription of arrays and files, in batches, with long audio cut into windows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from asr_adapt.audio.io import SAMPLE_RATE, audio_blocks, is_silent, split_into_windows
from asr_adapt.models.base import LoadedModel
from asr_adapt.models.options import TranscribeOptions


@dataclass(frozen=True)
class Segment:
    """A stretch of the input and the text recognised in it (times in seconds)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """The result for one input, with what produced it."""

    source: str
    text: str
    segments: tuple[Segment, ...]
    duration: float
    model: str
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber:
    """Batched decoding of files and arrays, on whatever device the model is on; how a batch
    is decoded (Whisper ``generate``, CTC argmax) is the model's backend's business."""

    def __init__(self, loaded: LoadedModel, options: TranscribeOptions | None = None):
        self.loaded = loaded
        self.backend = loaded.engine
        options = options or TranscribeOptions()
        if options.beam_size is None:
            options = replace(options, beam_size=self.backend.default_beam_size)
        self.options = options
        self.backend.check_decoding(self.options)
        #: After an interrupted :meth:`transcribe_files`: what was decoded of unfinished inputs.
        self.interrupted: list[Transcript] = []

    @property
    def model(self):
        return self.loaded.model

    def transcribe_arrays(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Transcribe pieces of at most 30 s each; silent pieces give empty text."""
        texts = [""] * len(audios)
        todo = [i for i, audio in enumerate(audios) if len(audio) and not is_silent(audio)]
        if reads_short_windows(self.loaded, self.options):
            # A short window fits a batch's longest piece: batching pieces of like length
            # keeps the others' padding close to what training gave them.
            todo.sort(key=lambda i: len(audios[i]))
        for begin in range(0, len(todo), self.options.batch_size):
            batch = todo[begin:begin + self.options.batch_size]
            for i, text in zip(batch, self._decode([audios[i] for i in batch])):
                texts[i] = text
        return texts

    def _decode(self, audios: list[np.ndarray]) -> list[str]:
        return self.backend.decode(self.loaded, audios, self.options)

    def transcribe_audio(self, audio: np.ndarray, source: str = "<audio>") -> Transcript:
        """Transcribe one array of any length (16 kHz mono float)."""
        return next(self._transcribe_stream([(source, lambda: iter((audio,)))]))

    def transcribe_files(self, paths: Iterable[str | Path], progress: bool = False) -> Iterator[Transcript]:
        """Transcribe files in order, batching windows across files; yields one result per file.

        Long files are read a block at a time (:func:`asr_adapt.audio.io.audio_blocks`), so
        memory stays flat however long the recording. If the run is interrupted (Ctrl-C),
        :attr:`interrupted` holds what was decoded of the inputs not yet yielded."""
        paths = [Path(p) for p in paths]
        loaders = [(str(p), (lambda p=p: audio_blocks(p, max_seconds=self.options.max_seconds))) for p in paths]
        bar = None
        if progress and len(paths) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="file", desc="transcribing", leave=False)
        try:
            for transcript in self._transcribe_stream(loaders):
                if bar is not None:
                    bar.update(1)
                yield transcript
        finally:
            if bar is not None:
                bar.close()

    def _transcribe_stream(self, loaders) -> Iterator[Transcript]:
        """Read inputs lazily, block by block; cut them into windows, decode windows in full
        batches, and yield each input's transcript as soon as all its windows are decoded.

        A window that ends a block is held back and read again with the next block (its
        cut was only the block's end), so that long files are cut where the audio is quiet."""
        pending: list[_Pending] = []
        queue: list[tuple[int, int, np.ndarray]] = []  # (input index, window index, samples)
        done = 0
        self.interrupted = []

        def flush() -> None:
            texts = self.transcribe_arrays([samples for _, _, samples in queue])
            for (item, window, _), text in zip(queue, texts):
                pending[item].texts[window] = text
            queue.clear()

        def finished() -> Iterator[Transcript]:
            nonlocal done
            while done < len(pending) and pending[done].complete and None not in pending[done].texts:
                yield self._assemble(pending[done])
                done += 1

        try:
            for source, blocks in loaders:
                item = _Pending(source)
                pending.append(item)
                for start, samples in item.windows_of(blocks(), self.options.window_seconds):
                    item.windows.append((start, start + len(samples)))
                    item.texts.append(None)
                    queue.append((len(pending) - 1, len(item.windows) - 1, samples))
                    if len(queue) >= self.options.batch_size:
                        flush()
                        yield from finished()
            flush()
            yield from finished()
        except KeyboardInterrupt:
            self.interrupted = [self._assemble(p) for p in pending[done:] if any(p.texts)]
            raise

    def _assemble(self, item: _Pending) -> Transcript:
        segments = tuple(Segment(round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), text)
                         for (start, end), text in zip(item.windows, item.texts) if text)
        return Transcript(source=item.source, text=" ".join(s.text for s in segments), segments=segments,
                          duration=round(item.samples / SAMPLE_RATE, 3), model=self.loaded.name,
                          options=asdict(self.options))


@dataclass
class _Pending:
    """One input on its way through the batches: its windows so far and their texts."""

    source: str
    windows: list[tuple[int, int]] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    samples: int = 0
    #: All of the input has been read and cut.
    complete: bool = False

    def windows_of(self, blocks: Iterator[np.ndarray], window_seconds: float) -> Iterator[tuple[int, np.ndarray]]:
        """``(first sample, samples)`` of each window of the input's blocks, in order."""
        carry = np.zeros(0, dtype=np.float32)
        offset = 0  # where carry starts in the input
        block = next(blocks, None)
        while block is not None:
            following = next(blocks, None)
            self.samples += len(block)
            audio = np.concatenate([carry, block]) if len(carry) else block
            windows = split_into_windows(audio, max_seconds=window_seconds)
            final = following is None
            for start, end in windows if final else windows[:-1]:
                yield offset + start, audio[start:end]
            if not final:
                carry = audio[windows[-1][0]:].copy()
                offset += windows[-1][0]
            block = following
        self.complete = True


# --------------------------------------------------------------------------- Whisper decoding


def reads_short_windows(loaded: LoadedModel, options: TranscribeOptions) -> bool:
    """Whether the encoder reads short windows: asked for in seconds, or "auto" with a
    profile that reads best in them (``loaded.info``, set when a profile is loaded)."""
    if options.encoder_window == "auto":
        info = getattr(loaded, "info", None) or {}
        return bool(info.get("profile") and info.get("short_windows"))
    return options.encoder_window != "full"
