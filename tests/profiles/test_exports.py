"""Exports for other runtimes: merged transformers folder, CTranslate2 / faster-whisper, bare PEFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli_runner import assert_one_line_error, run_cli
from conftest import sine
from fake_profiles import make_profile


@pytest.fixture
def alice(home, tiny_whisper_dir):
    return make_profile("alice", tiny_whisper_dir)


def features(tiny_whisper_dir):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    return processor.feature_extractor(sine(2.0), sampling_rate=16000, return_tensors="pt").input_features


def greedy(model, inputs):
    with torch.no_grad():
        return model.generate(inputs, max_new_tokens=6, do_sample=False).tolist()


def test_merged_export_is_the_profile_without_asr_adapt(alice, tmp_path, tiny_whisper_dir, capsys):
    from transformers import WhisperForConditionalGeneration, pipeline

    from asr_adapt.profiles.personal import load_profile_model

    out = tmp_path / "alice-merged"
    code, stdout, err = run_cli(capsys, "profiles", "export", "alice", "--format", "merged", "-o", out)
    assert code == 0, err
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    exported = WhisperForConditionalGeneration.from_pretrained(out).eval()
    loaded, _ = load_profile_model("alice", device="cpu", dtype="float32")
    inputs = features(tiny_whisper_dir)
    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    assert greedy(exported, inputs) == greedy(loaded.model, inputs)
    assert not torch.equal(exported.model.encoder.layers[0].self_attn.q_proj.weight,
                           base.model.encoder.layers[0].self_attn.q_proj.weight)  # the adapter is in
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    assert isinstance(asr(sine(1.0), generate_kwargs={"max_new_tokens": 4})["text"], str)
    card = (out / "README.md").read_text()
    assert "asr-adapt profile 'alice'" in card and "pipeline(" in card


def test_peft_export_loads_with_peft(alice, tmp_path, tiny_whisper_dir, capsys):
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    out = tmp_path / "alice-peft"
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "peft", "-o", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    model = PeftModel.from_pretrained(base, out).merge_and_unload().eval()
    from asr_adapt.profiles.personal import load_profile_model

    loaded, _ = load_profile_model("alice", device="cpu", dtype="float32")
    inputs = features(tiny_whisper_dir)
    assert greedy(model, inputs) == greedy(loaded.model, inputs)


def test_ct2_export_runs_in_faster_whisper(alice, tmp_path, capsys):
    faster_whisper = pytest.importorskip("faster_whisper")
    out = tmp_path / "alice-ct2"
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "ct2", "-o", out,
                           "--quantization", "float32")
    assert code == 0, err
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    model = faster_whisper.WhisperModel(str(out), device="cpu", compute_type="float32")
    segments, info = model.transcribe(np.asarray(sine(2.0)), beam_size=1, without_timestamps=True,
                                      max_new_tokens=4, language="en")
    assert isinstance(" ".join(s.text for s in segments), str) and info.duration == pytest.approx(2.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_refusals(alice, tmp_path, capsys, home, tiny_whisper_dir):
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "peft", "-o", existing)
    assert_one_line_error(code, err, "exists; choose a new folder, or pass --force")
    assert (existing / "keep.txt").read_text() == "mine"
    code, _, err = run_cli(capsys, "profiles", "export", "nobody", "--format", "peft", "-o", tmp_path / "x")
    assert_one_line_error(code, err, "no profile")
    make_profile("bare", tiny_whisper_dir, with_adapter=False)
    code, _, err = run_cli(capsys, "profiles", "export", "bare", "--format", "merged", "-o", tmp_path / "y")
    assert_one_line_error(code, err, "has no adapter to export")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "peft", "-o", existing, "--force")
    assert code == 0 and not (existing / "keep.txt").exists() and (existing / "adapter_config.json").is_file()


def test_a_full_disk_mid_export_leaves_no_folder(alice, tmp_path, capsys, monkeypatch):
    import errno
    import shutil

    from asr_adapt.profiles import exports

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(exports.shutil, "copyfile", full)
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "peft", "-o", tmp_path / "out")
    monkeypatch.setattr(exports.shutil, "copyfile", shutil.copyfile)
    assert_one_line_error(code, err, r"No space left on device\); nothing was written there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_vllm_export_fits_the_layers_vllm_adapts(alice, tmp_path, tiny_whisper_dir, capsys):
    """vLLM itself needs a CUDA GPU: what can be checked here is that every LoRA weight sits on
    a layer vLLM's Whisper adapts (q/k/v/out_proj, fc1/fc2), that the layer exists in the base
    model, and that the shapes fit it."""
    import json

    from transformers import WhisperForConditionalGeneration

    from asr_adapt.profiles.exports import vllm_layout_problems

    out = tmp_path / "alice-vllm"
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", "vllm", "-o", out)
    assert code == 0, err
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == str(tiny_whisper_dir)
    card = (out / "README.md").read_text()
    assert f"vllm serve {tiny_whisper_dir} --enable-lora" in card and "--lora-modules alice=" in card
    assert "Not run here" in card
    base = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    assert vllm_layout_problems(out, base) == []

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("lora_A.weight"))
    tensors[key] = tensors[key][:, :-1].contiguous()  # a shape that does not fit the layer
    tensors["base_model.model.model.encoder.conv1.lora_A.weight"] = tensors[key].clone()
    save_file(tensors, str(out / "adapter_model.safetensors"))
    problems = vllm_layout_problems(out, base)
    assert any("conv1: vLLM's Whisper takes no LoRA" in p for p in problems)
    assert any(p.startswith(key) and "the layer needs" in p for p in problems)


def make_ctc_profile(name, ctc_dir):
    """A wav2vec2 profile whose LoRA adapter (random B weights) changes the model's outputs."""
    from transformers import AutoModelForCTC

    from asr_adapt.adapt.attach import attach_lora
    from asr_adapt.adapt.lora import LoraSettings
    from asr_adapt.profiles.profile import Profile

    torch.manual_seed(3)
    peft_model = attach_lora(AutoModelForCTC.from_pretrained(ctc_dir), LoraSettings(rank=2, where="encoder"))
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.copy_(0.5 * torch.randn(param.shape))
    profile = Profile.create(name, base_model=str(ctc_dir), base_weights_sha256=None, backend="wav2vec2")
    profile.commit_adapter(lambda d: peft_model.save_pretrained(d), settings={}, metrics={})
    return profile


def test_wav2vec2_merged_export_loads_in_plain_transformers_and_ct2_is_refused(home, tmp_path, capsys):
    from transformers import Wav2Vec2ForCTC, pipeline
    from wav2vec2_models import build_tiny_ctc

    from asr_adapt.profiles.personal import load_profile_model

    ctc_dir = build_tiny_ctc(tmp_path / "w2v")
    make_ctc_profile("tones", ctc_dir)
    out = tmp_path / "tones-merged"
    code, _, err = run_cli(capsys, "profiles", "export", "tones", "--format", "merged", "-o", out)
    assert code == 0, err
    exported = Wav2Vec2ForCTC.from_pretrained(out).eval()
    loaded, _ = load_profile_model("tones", device="cpu", dtype="float32")
    inputs = torch.from_numpy(sine(1.0))[None]
    with torch.no_grad():
        ours, theirs = loaded.model(inputs).logits, exported(inputs).logits
        base = Wav2Vec2ForCTC.from_pretrained(ctc_dir).eval()(inputs).logits
    assert torch.allclose(ours, theirs, atol=1e-5) and not torch.allclose(base, theirs, atol=1e-3)
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    assert isinstance(asr(sine(1.0))["text"], str)
    for fmt in ("ct2", "vllm"):
        code, _, err = run_cli(capsys, "profiles", "export", "tones", "--format", fmt, "-o", tmp_path / fmt)
        assert_one_line_error(code, err, "Whisper only: export it with --format merged or peft")
        assert not (tmp_path / fmt).exists()


def test_an_unknown_format_is_one_line(alice, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, "profiles", "export", "alice", "--format", "onnx", "-o", tmp_path / "x")
    assert stop.value.code == 2
    assert_one_line_error(2, capsys.readouterr().err, r"argument --format: invalid choice: 'onnx'")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["merged", "ct2"])
def test_a_full_disk_while_writing_the_model_leaves_no_folder(alice, tmp_path, capsys, monkeypatch, fmt):
    """The disk fills while the weights are written (the part of an export that takes space)."""
    import errno

    from asr_adapt.models.whisper import ct2_build

    real = ct2_build.save_transformers_folder

    def fill_then_fail(loaded, folder):
        real(loaded, folder)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("asr_adapt.profiles.exports.save_transformers_folder", fill_then_fail)
    code, _, err = run_cli(capsys, "profiles", "export", "alice", "--format", fmt, "-o", tmp_path / "out")
    assert_one_line_error(code, err, r"No space left on device\); nothing was written there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
