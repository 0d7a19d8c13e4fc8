"""Resources: long files are decoded block by block, Ctrl-C keeps what was done, and nothing
from outside is ever unpickled."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import soundfile as sf

from hostile import run_cli, tone

REPO = Path(__file__).resolve().parents[2]


def test_ctrl_c_keeps_finished_files_and_the_part_decoded(capsys, store, tmp_path, tiny_whisper_dir, monkeypatch):
    from asr_adapt.models.transcriber import Transcriber

    short = tmp_path / "short.wav"
    sf.write(short, tone(2.0), 16000)
    long = tmp_path / "long.wav"
    gap = np.zeros(8000, dtype=np.float32)
    sf.write(long, np.concatenate([np.concatenate([tone(4.0), gap])] * 40), 16000)  # 3 min
    calls = []

    def decode_then_ctrl_c(self, audios):
        calls.append(len(audios))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [f"words{len(calls)}"] * len(audios)
    monkeypatch.setattr(Transcriber, "_decode", decode_then_ctrl_c)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "transcribe", short, long, "--output-dir", out, "--batch-size", "2",
                           "--model", tiny_whisper_dir)
    assert code == 130 and "Traceback" not in err
    assert (out / "short.txt").read_text().strip() == "words1"
    partial = (out / "long.partial.txt").read_text()
    assert partial.startswith("words1 words2") and "words3" not in partial
    assert "kept" in err and "long.partial.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["long.partial.txt", "short.txt"]


def test_nothing_is_ever_unpickled():
    """Adapters and archives come from outside: no pickle.load, no torch.load without
    weights_only=True, anywhere in the package."""
    offenders = []
    for path in (REPO / "asr_adapt").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load", "numpy.load", "np.load"):
                allow = any(k.arg == "allow_pickle" and ast.unparse(k.value) == "False" for k in node.keywords)
                if not allow:
                    offenders.append(f"{path.name}:{node.lineno} {name}")
            if name == "torch.load" and not any(k.arg == "weights_only" and ast.unparse(k.value) == "True"
                                                for k in node.keywords):
                offenders.append(f"{path.name}:{node.lineno} {name}")
    assert offenders == []

