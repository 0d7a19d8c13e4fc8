"""Make the shipped sample speaker: synthetic "user" speech over a cheap phone channel.

Reproduce the shipped ``samples/`` audio with::

    python recipes/make_samples.py --out samples

It needs ``espeak-ng`` on PATH (Debian: ``apt-get install espeak-ng``) and numpy, scipy and
soundfile; nothing is downloaded. On a 2-core CPU it takes well under a minute. Output is
deterministic for a given ``--seed`` (default 20240607) and espeak-ng version (made with
espeak-ng 1.51): espeak-ng's synthesis has no randomness, and every random draw below comes
from ``numpy.random.default_rng`` seeded from ``--seed`` (and the prompt's line number).

The speaker ("sample-speaker")
------------------------------
espeak-ng's British Received Pronunciation voice with the Klatt formant synthesizer,
``-v en-gb-x-rp+klatt``, read slowly: ``-s`` 155 words per minute (espeak's default is 175)
and ``-p`` 50 (default pitch), each utterance jittered by a seeded, uniform +-6 wpm in rate
and +-5 in pitch so that no two sentences sound mechanically identical. To the bundled
Whisper tiny.en this is an unfamiliar, robotic British voice; together with the channel
below it makes real but consistent, learnable mistakes (see samples/README.md for the WER).

The channel (a cheap phone in a small room), applied in this order
-------------------------------------------------------------------
1. Leading/trailing silence of the synthesis trimmed (-45 dB relative to the peak), then
   0.25 s of silence added before and 0.35 s after the speech.
2. Room reverberation: convolution with one synthetic room impulse response shared by every
   utterance (the user's room): a unit direct path plus an exponentially decaying Gaussian
   noise tail starting 2.5 ms later, RT60 = 0.30 s, tail energy 0.25 of the direct path
   (about -6 dB direct-to-reverberant), drawn once from the seed.
3. Noise: white Gaussian noise at a fixed SNR of 30 dB relative to the mean power of the
   reverberant speech (before the band limit, so it becomes band-limited hiss), a fresh
   draw for each utterance.
4. Telephone band limit: 6th-order Butterworth band-pass, 300-3400 Hz (causal ``sosfilt``).
5. Resampled to 8000 Hz (``scipy.signal.resample_poly``), scaled to an RMS level of
   -23 dBFS jittered by a seeded +-2 dB per utterance (peaks capped at -1 dBFS), and stored
   as 16-bit mono FLAC. The library resamples any rate to 16 kHz when it loads audio.

Which lines of samples/prompts.txt are used
-------------------------------------------
``prompts.txt`` holds one sentence per line (344 lines as shipped). The two parts are
disjoint:

- test (held-out, about 2 minutes): the LAST ``--n-test`` = 30 lines (lines 315-344);
- enroll (about 5 minutes): the FIRST ``--n-enroll`` = 72 lines (lines 1-72).

Lines in between (73-314) are not voiced here: an enrollment session can still draw prompts
from the start of the file (the ones this speaker already "recorded"), and any prompts
drawn from the middle are new to this speaker too, but the last 30 must stay unseen.

Output layout (under ``--out``)
-------------------------------
- ``enroll/<id>.flac`` and ``test/<id>.flac``, ids ``sample-enroll-L001`` (L + the 1-based
  line number in prompts.txt, zero-padded to 3 digits),
- ``enroll/manifest.jsonl`` and ``test/manifest.jsonl``: one JSON object per line with
  ``id``, ``audio`` (file name relative to the manifest's folder), ``text`` (the line exactly
  as in prompts.txt), ``speaker`` ("sample-speaker"), ``domain`` ("enroll" or "test") and
  ``duration`` (seconds, rounded to 2 decimals).

The script leaves ``prompts.txt`` and ``README.md`` alone and rewrites only the two part
folders (stale ``*.flac`` in them are removed first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

SPEAKER = "sample-speaker"

#: espeak-ng voice (language + variant) of the sample speaker.
VOICE = "en-gb-x-rp+klatt"
#: Speaking rate in words per minute and pitch (0-99); jitter is a uniform +- per utterance.
RATE, RATE_JITTER = 155, 6
PITCH, PITCH_JITTER = 50, 5

#: Prompt counts: the test part is the last N_TEST lines, enrollment the first N_ENROLL.
N_TEST = 30
N_ENROLL = 72

PAD_BEFORE_S, PAD_AFTER_S = 0.25, 0.35
TRIM_DB = 45.0
RT60_S = 0.30
REVERB_TAIL_ENERGY = 0.25
REVERB_DELAY_S = 0.0025
SNR_DB = 30.0
BAND_HZ = (300.0, 3400.0)
BAND_ORDER = 6
OUT_RATE = 8000
LEVEL_DBFS, LEVEL_JITTER_DB = -23.0, 2.0
PEAK_MAX = 10 ** (-1.0 / 20)

DEFAULT_SEED = 20240607


def read_prompts(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines]
    if any(not p for p in prompts):
        raise SystemExit(f"{path}: blank lines are not allowed (line numbers must stay stable)")
    if len(set(prompts)) != len(prompts):
        raise SystemExit(f"{path}: duplicate prompts")
    return prompts


def split_lines(n_prompts: int, n_enroll: int, n_test: int) -> dict[str, list[int]]:
    """0-based prompt indices of each part: enroll = first n_enroll, test = last n_test."""
    if n_enroll + n_test > n_prompts:
        raise SystemExit(f"need {n_enroll} + {n_test} prompts, prompts.txt has {n_prompts}")
    return {"enroll": list(range(n_enroll)),
            "test": list(range(n_prompts - n_test, n_prompts))}


def espeak(text: str, voice: str, rate: int, pitch: int, workdir: Path) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` with espeak-ng; returns float64 mono samples and their rate."""
    wav = workdir / "utt.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), "--stdin"]
    subprocess.run(cmd, input=text.encode("utf-8"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    audio, sr = sf.read(wav, dtype="float64", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return audio, sr


def trim(x: np.ndarray, sr: int, db: float = TRIM_DB) -> np.ndarray:
    """Cut leading/trailing samples more than ``db`` below the peak (10 ms margin kept)."""
    thr = np.max(np.abs(x)) * 10 ** (-db / 20)
    idx = np.flatnonzero(np.abs(x) > thr)
    if idx.size == 0:
        return x
    margin = int(0.01 * sr)
    return x[max(0, idx[0] - margin): idx[-1] + margin + 1]


def room_impulse_response(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (RT60_S), tail energy REVERB_TAIL_ENERGY."""
    n = int(RT60_S * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10) * t / RT60_S)  # -60 dB at RT60
    tail *= np.sqrt(REVERB_TAIL_ENERGY / np.sum(tail ** 2))
    delay = int(REVERB_DELAY_S * sr)
    rir = np.zeros(delay + n)
    rir[0] = 1.0
    rir[delay:] += tail
    return rir


def phone_channel(speech: np.ndarray, sr: int, rir: np.ndarray, rng: np.random.Generator,
                  level_dbfs: float) -> np.ndarray:
    """Reverb -> noise at SNR_DB -> 300-3400 Hz band-pass -> OUT_RATE -> level. Returns float."""
    x = np.concatenate([np.zeros(int(PAD_BEFORE_S * sr)), speech, np.zeros(int(PAD_AFTER_S * sr))])
    y = signal.fftconvolve(x, rir)[: len(x)]
    power = np.mean(y ** 2)
    noise = rng.standard_normal(len(y))
    noise *= np.sqrt(power / 10 ** (SNR_DB / 10) / np.mean(noise ** 2))
    y = y + noise
    sos = signal.butter(BAND_ORDER, BAND_HZ, btype="bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, y)
    g = np.gcd(int(sr), OUT_RATE)
    y = signal.resample_poly(y, OUT_RATE // g, int(sr) // g)
    rms = np.sqrt(np.mean(y ** 2))
    y *= 10 ** (level_dbfs / 20) / max(rms, 1e-12)
    peak = np.max(np.abs(y))
    if peak > PEAK_MAX:
        y *= PEAK_MAX / peak
    return y


def utterance_rng(seed: int, line_no: int) -> np.random.Generator:
    """Independent stream per prompt line, so one utterance does not depend on the others."""
    return np.random.default_rng([seed, line_no])


def make_part(domain: str, indices: list[int], prompts: list[str], out: Path, seed: int,
              rir: np.ndarray, rir_sr: int, voice: str, workdir: Path) -> list[dict]:
    folder = out / domain
    if folder.exists():
        for stale in folder.glob("*.flac"):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in indices:
        line_no = i + 1
        text = prompts[i]
        rng = utterance_rng(seed, line_no)
        rate = RATE + int(rng.integers(-RATE_JITTER, RATE_JITTER + 1))
        pitch = PITCH + int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))
        level = LEVEL_DBFS + float(rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB))
        speech, sr = espeak(text, voice, rate, pitch, workdir)
        if sr != rir_sr:
            raise SystemExit(f"espeak-ng changed its sample rate ({sr} != {rir_sr})")
        audio = phone_channel(trim(speech, sr), sr, rir, rng, level)
        utt_id = f"sample-{domain}-L{line_no:03d}"
        name = f"{utt_id}.flac"
        sf.write(folder / name, audio, OUT_RATE, format="FLAC", subtype="PCM_16")
        rows.append({"id": utt_id, "audio": name, "text": text, "speaker": SPEAKER,
                     "domain": domain, "duration": round(len(audio) / OUT_RATE, 2)})
    with open(folder / "manifest.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("samples"),
                   help="output folder (default: samples); enroll/ and test/ are rewritten")
    p.add_argument("--prompts", type=Path, default=None,
                   help="prompt list, one sentence a line (default: OUT/prompts.txt)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of every random draw (default: {DEFAULT_SEED})")
    p.add_argument("--n-enroll", type=int, default=N_ENROLL,
                   help=f"enrollment = the first N prompt lines (default: {N_ENROLL})")
    p.add_argument("--n-test", type=int, default=N_TEST,
                   help=f"test = the last N prompt lines (default: {N_TEST})")
    p.add_argument("--voice", default=VOICE, help=f"espeak-ng voice (default: {VOICE})")
    args = p.parse_args(argv)

    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found on PATH (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    prompts_path = args.prompts or args.out / "prompts.txt"
    prompts = read_prompts(prompts_path)
    parts = split_lines(len(prompts), args.n_enroll, args.n_test)

    with tempfile.TemporaryDirectory(prefix="make_samples_") as tmp:
        workdir = Path(tmp)
        _, sr = espeak("Hello.", args.voice, RATE, PITCH, workdir)
        # One room for the speaker: its impulse response depends only on the seed.
        rir = room_impulse_response(sr, np.random.default_rng([args.seed, 0, zlib.crc32(b"room")]))
        for domain in ("enroll", "test"):
            rows = make_part(domain, parts[domain], prompts, args.out, args.seed, rir, sr,
                             args.voice, workdir)
            total = sum(r["duration"] for r in rows)
            lines = parts[domain]
            print(f"{domain}: {len(rows)} utterances (prompt lines {lines[0] + 1}-{lines[-1] + 1}),"
                  f" {total:.1f} s = {total / 60:.2f} min -> {args.out / domain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
