"""Live sessions (source -> processor -> display -> transcript) and profile switching."""

from __future__ import annotations

import numpy as np
import pytest

from fake_profiles import make_profile
from asr_adapt.profiles.info import ProfileError


@pytest.fixture(autouse=True)
def profiles_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_ADAPT_HOME", str(tmp_path / "home"))


def logits(loaded):
    import torch

    features = torch.linspace(-1, 1, 80 * 3000).reshape(1, 80, 3000)
    with torch.no_grad():
        return loaded.model(input_features=features, decoder_input_ids=torch.tensor([[50257, 50362, 464]])).logits


def test_switching_profiles_without_reloading_the_base(tiny_whisper_dir):
    import torch

    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.personal import AdapterSwitcher, load_profile_model

    make_profile("alice", tiny_whisper_dir, seed=1)
    bob = make_profile("bob", tiny_whisper_dir, seed=7)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    model_object = loaded.model
    base = logits(loaded)
    switcher = AdapterSwitcher(loaded)
    switcher.use("alice")
    alice = logits(loaded)
    assert switcher.active == "alice" and loaded.name.endswith("+alice")
    assert not torch.allclose(alice, base)
    switcher.use("bob")
    bob_logits = logits(loaded)
    assert not torch.allclose(bob_logits, alice)
    switcher.use("alice")
    # Merging and unmerging round floats; 1e-6 failed once on a loaded machine.
    assert torch.allclose(logits(loaded), alice, atol=1e-5)
    switcher.use(None)
    assert torch.equal(logits(loaded), base)          # the base weights come back bit for bit
    assert loaded.model is model_object               # one model object all along
    assert not any(hasattr(m, "base_layer") for m in loaded.model.modules())  # merged, no LoRA layers
    # The same as loading the profile the ordinary way.
    fresh, _ = load_profile_model("bob", device="cpu")
    switcher.use("bob")
    assert torch.allclose(logits(loaded), logits(fresh), atol=1e-5)
    assert bob.name == "bob"


def test_switching_to_a_bad_profile_keeps_a_working_model(tiny_whisper_dir):
    from asr_adapt.models.loading import resolve_model
    from asr_adapt.profiles.personal import AdapterSwitcher

    make_profile("alice", tiny_whisper_dir)
    make_profile("empty", tiny_whisper_dir, with_adapter=False)
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    switcher = AdapterSwitcher(loaded)
    switcher.use("alice")
    with pytest.raises(ProfileError, match="no adapter yet"):
        switcher.use("empty")
    with pytest.raises(ProfileError, match="no profile|not found|does not exist|unknown"):
        switcher.use("nobody")
    assert switcher.active == "alice"


# --------------------------------------------------------------------------- sessions (fake decoder)


class ScriptedSource:
    """An AudioSource that hands out ``audio`` in 50 ms blocks, then ends, or raises
    ``then`` (a lost device, Ctrl-C) once it has handed everything out."""

    def __init__(self, audio, then=None, overflows=0):
        self.blocks = [audio[i:i + 800] for i in range(0, len(audio), 800)]
        self.then = then
        self._overflows = overflows
        self.closed = False

    def read(self, timeout=None):
        if self.blocks:
            return self.blocks.pop(0)
        if self.then is not None:
            error, self.then = self.then, None
            raise error
        return None

    def discard_pending(self):
        return 0

    @property
    def overflows(self):
        return self._overflows

    @property
    def ended(self):
        return not self.blocks

    def close(self):
        self.closed = True


def tone_session(audio, then=None, **kwargs):
    import io

    from streaming_fakes import ToneDecoder

    from asr_adapt.ui.live_terminal import LineDisplay
    from asr_adapt.decode.live import LiveSession
    from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor

    out, notes = io.StringIO(), io.StringIO()
    source = ScriptedSource(audio, then=then, overflows=kwargs.pop("overflows", 0))
    processor = StreamingProcessor(ToneDecoder(), StreamingOptions(hop_seconds=0.5))
    session = LiveSession(source, processor, LineDisplay(out, notes), **kwargs)
    return session.run(), out.getvalue(), notes.getvalue(), source


def test_session_prints_committed_phrases_and_counts_overflows():
    from streaming_fakes import script_audio

    audio, _ = script_audio([[1, 2, 3], [4, 5]])
    result, out, _, source = tone_session(audio, overflows=3)
    assert out.lower().replace(".", "").splitlines() == ["w1 w2 w3", "w4 w5"]
    assert result.phrases == tuple(line for line in out.splitlines())
    assert result.overflows == 3 and not result.interrupted and result.error is None
    assert source.closed


def test_lost_device_keeps_the_text_so_far():
    from streaming_fakes import script_audio

    from asr_adapt.audio.devices import MicrophoneError

    audio, _ = script_audio([[1, 2, 3, 4]], pause_seconds=0.05)
    result, _, _, _ = tone_session(audio, then=MicrophoneError("the microphone 'x' stopped delivering audio"))
    assert result.error.startswith("the microphone 'x' stopped")
    assert result.text.lower().replace(".", "").split() == ["w1", "w2", "w3", "w4"]   # the tail was flushed too


def test_ctrl_c_flushes_and_writes(tmp_path):
    from streaming_fakes import script_audio

    from asr_adapt.decode.live import default_transcript_path, write_transcript

    audio, _ = script_audio([[7, 8], [9]], pause_seconds=0.05)
    result, _, _, _ = tone_session(audio, then=KeyboardInterrupt())
    assert result.interrupted
    path = write_transcript(result, default_transcript_path(tmp_path))
    assert path.name.startswith("live-") and path.parent == tmp_path
    assert path.read_text().lower().replace(".", "").splitlines() == ["w7 w8 w9"]


def test_typed_profile_names_switch_adapters():
    import queue

    from streaming_fakes import script_audio

    class Switcher:
        def __init__(self):
            self.used = []

        def use(self, name):
            if name == "nobody":
                raise ProfileError("no profile 'nobody'")
            self.used.append(name)

    commands = queue.Queue()
    for line in ("alice", "nobody", "base"):
        commands.put(line)
    switcher = Switcher()
    audio, _ = script_audio([[1]])
    result, _, notes, _ = tone_session(audio, switcher=switcher, commands=commands)
    assert switcher.used == ["alice", None]
    assert result.switches == ("alice", "base")
    assert "cannot switch: no profile 'nobody'" in notes


def test_kept_audio_goes_into_the_profile_in_pieces(tmp_path):
    from streaming_fakes import script_audio

    from asr_adapt.decode.live import AudioKeeper
    from asr_adapt.profiles.profile import Profile

    profile = Profile.create("alice", base_model="whisper-tiny.en", base_weights_sha256=None)
    speech, _ = script_audio([list(range(40))] * 4, gap_seconds=0.1)       # ~70 s of 'speech'
    audio = np.concatenate([speech, np.zeros(16000 * 40, np.float32)])      # then 40 s of silence
    keeper = AudioKeeper(profile, piece_seconds=30.0)
    for start in range(0, len(audio), 1600):
        keeper.add(audio[start:start + 1600])
    keeper.flush()
    kept = profile.unlabeled_utterances()
    assert len(kept) == len(keeper.kept) >= 3
    assert all(u.duration <= 30.0 and u.text is None for u in kept)
    assert sum(u.duration for u in kept) >= len(speech) / 16000 - 1   # all speech kept, silence not
    assert sum(u.duration for u in kept) < len(audio) / 16000 - 20
    assert keeper.skipped >= 1


def test_terminal_display_shows_the_tentative_tail_and_keeps_finished_phrases():
    import io

    from rich.console import Console

    from asr_adapt.ui.live_terminal import RichDisplay
    from asr_adapt.decode.streaming import StreamUpdate

    screen = io.StringIO()
    display = RichDisplay(Console(file=screen, force_terminal=True, width=80, color_system=None))
    display.update(StreamUpdate(committed=("We", "watched"), tentative="the fire"))
    assert "We watched the fire" in screen.getvalue()
    display.update(StreamUpdate(committed=("the", "fireworks."), tentative="", phrase_ended=True))
    display.note("now using profile 'alice'")
    display.update(StreamUpdate(committed=("Next",), tentative="one"))
    display.close()
    text = screen.getvalue()
    assert "We watched the fireworks." in text and "now using profile 'alice'" in text
    assert "Next\n" in text     # the open phrase is printed for good at the end
