"""--adapter-scale: the profile's LoRA deltas scaled at load time (0 = base model, 1 = as trained)."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from asr_adapt.core.errors import OptionsError
from asr_adapt.models.loading import resolve_model
from asr_adapt.profiles.personal import AdapterSwitcher, load_profile_model
from cli_runner import FAST, assert_one_line_error, run_cli
from conftest import sine
from fake_profiles import make_profile


def _adapted_weights(loaded) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in loaded.model.state_dict().items() if k.endswith(("q_proj.weight", "fc1.weight"))}


def test_scaled_deltas_are_that_share_of_the_adapter(home, tiny_whisper_dir):
    make_profile("alice", tiny_whisper_dir)
    base = _adapted_weights(resolve_model(str(tiny_whisper_dir), device="cpu"))
    full = _adapted_weights(load_profile_model("alice", device="cpu")[0])
    half_loaded, _ = load_profile_model("alice", device="cpu", adapter_scale=0.5)
    half = _adapted_weights(half_loaded)
    none = _adapted_weights(load_profile_model("alice", device="cpu", adapter_scale=0.0)[0])
    changed = [k for k in base if not torch.equal(base[k], full[k])]
    assert changed  # the adapter changes these weights
    for k in changed:
        assert torch.allclose(half[k], base[k] + 0.5 * (full[k] - base[k]), atol=1e-6)
        assert torch.allclose(none[k], base[k], atol=1e-7)
    assert half_loaded.info["adapter_scale"] == 0.5


def test_the_live_switcher_scales_too(home, tiny_whisper_dir):
    make_profile("alice", tiny_whisper_dir)
    full = _adapted_weights(load_profile_model("alice", device="cpu")[0])
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    base = _adapted_weights(loaded)
    switcher = AdapterSwitcher(loaded)
    switcher.use("alice", 0.5)
    half = _adapted_weights(loaded)
    k = next(k for k in base if not torch.equal(base[k], full[k]))
    assert torch.allclose(half[k], base[k] + 0.5 * (full[k] - base[k]), atol=1e-6)
    switcher.use("alice")
    assert torch.allclose(_adapted_weights(loaded)[k], full[k], atol=1e-6)
    with pytest.raises(OptionsError, match="between 0 and 2"):
        switcher.use("alice", 3.0)


@pytest.mark.parametrize("command", ["transcribe", "compare"])
def test_a_bad_scale_is_a_one_line_error_before_decoding(capsys, home, tmp_path, tiny_whisper_dir, command):
    make_profile("alice", tiny_whisper_dir)
    audio = tmp_path / "a.wav"
    sf.write(audio, sine(1.0), 16000)
    argv = ([command, audio, "--profile", "alice"] if command == "transcribe"
            else [command, "--profile", "alice", tmp_path])
    code, _, err = run_cli(capsys, *argv, "--adapter-scale", "-1", *FAST)
    assert_one_line_error(code, err, "adapter scale must be between 0 and 2")
