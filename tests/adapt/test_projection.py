"""The 2-D projection picture: PCA, the domain probe, pooled states and the PNG."""

from __future__ import annotations

import numpy as np

from asr_adapt.adapt.lora import LoraSettings
from asr_adapt.adapt.attach import attach_lora
from asr_adapt.models.loading import resolve_model
from asr_adapt.adapt.projection import domain_projection, pca_2d, plot_projection, pooled_states, probe_accuracy
from conftest import sine


def test_pca_finds_the_direction_of_largest_spread():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * np.array([10, 3, 0.1, 0.1, 0.1])
    points, explained = pca_2d(x)
    assert points.shape == (200, 2)
    assert explained[0] > 0.85 and explained[0] > explained[1] > 0.05
    assert abs(np.corrcoef(points[:, 0], x[:, 0])[0, 1]) > 0.99


def test_probe_tells_separated_domains_and_not_mixed_ones():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    domains = np.array([0] * 40 + [1] * 40)
    assert probe_accuracy(np.concatenate([a, b + 3.0]), domains) > 0.95
    assert 0.2 < probe_accuracy(np.concatenate([a, b]), domains) < 0.75


def test_projection_png_from_a_tiny_model(tiny_whisper_dir, tmp_path):
    loaded = resolve_model(str(tiny_whisper_dir), device="cpu")
    labeled = [sine(1.0 + 0.1 * i, freq=200 + 30 * i) for i in range(6)]
    unlabeled = [sine(1.2, freq=200 + 30 * i) + 0.2 * np.random.default_rng(i).normal(size=19200).astype(np.float32)
                 for i in range(6)]
    vectors = pooled_states(loaded, labeled, layer=-1, batch_size=4)
    assert vectors.shape == (6, loaded.model.config.d_model)
    peft_model = attach_lora(loaded.model, LoraSettings(rank=2))
    projection = domain_projection(loaded, peft_model, labeled, unlabeled, layer=1)
    assert projection.before.points.shape == (12, 2) and list(projection.before.domains) == [0] * 6 + [1] * 6
    # LoRA B starts at zero: with and without the adapter the states are the same.
    assert np.allclose(projection.before.points, projection.after.points, atol=1e-4)
    path = plot_projection(projection, tmp_path / "pics" / "domain.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(projection.to_dict()) >= {"probe_accuracy_before", "probe_accuracy_after", "layer"}
