"""Make the shipped sample speaker: synthetic "user" speech over a cheap phone channel.

Reproduce the shipped ``samples/`` audio with::

    python recipes/make_samples.py --out samples

or only some of its three parts with ``--parts`` (comma-separated, default
``enroll,test,generic``), e.g. ``--parts generic``; the other part folders are left alone,
and each part comes out the same whether it is made alone or with the others.

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

The generic reference set (``generic/``, a forgetting guard)
-------------------------------------------------------------
Speech that is NOT the sample speaker's, to check that adapting to one voice does not
degrade general recognition (compare the WER of the unadapted and the adapted model here).
Clean and full band: no room, noise or band limit, and no random draw at all (``--seed``
does not affect it). Four other espeak-ng voices (default synthesizer, not Klatt) read the
lines in turn, voice ``GENERIC_VOICES[k % 4]`` for the k-th line: ``en-us`` (American
male), ``en-us+f3`` (American female), ``en-gb`` (British male) and ``en-us+m5`` (a second
American male); ``--generic-voices`` replaces the list (note: espeak-ng 1.51 ignores a
``+variant`` after ``en-gb``; write ``en+f2`` for a British female). All read at ``-s`` 165
wpm, ``-p`` 40, with ``-g`` 8 (an 80 ms pause between words): Whisper tiny.en transcribed
these voices with about twice the WER at espeak's default settings (no word gap, pitch
50), mostly run-together words. Then: trimmed and padded as in step 1 above, resampled to
16000 Hz, scaled to -23 dBFS RMS (peaks capped at -1 dBFS), rounded to ``GENERIC_BITS`` =
12 significant bits (the 4 lowest bits of each 16-bit sample are zero, which FLAC stores
for free; the rounding noise is about 55 dB below the speech) and stored as 16-bit mono
FLAC. The rounding keeps the part under 600 KB (about 0.58 MB instead of 0.90 MB at full
16-bit precision); set ``GENERIC_BITS = 16`` for full precision.

Which lines of samples/prompts.txt are used
-------------------------------------------
``prompts.txt`` holds one sentence per line (344 lines as shipped). The three parts are
disjoint (checked):

- test (held-out, about 2 minutes): the LAST ``--n-test`` = 30 lines (lines 315-344);
- enroll (about 5 minutes): the FIRST ``--n-enroll`` = 72 lines (lines 1-72);
- generic (about 1 minute): lines 290-301 (``GENERIC_LINES``), 12 sentences.

The other lines (73-289 and 302-314) are not voiced here: an enrollment session can still
draw prompts from the start of the file (the ones this speaker already "recorded"), and any
prompts drawn from the middle are new to this speaker too, but the last 30 must stay unseen
(and lines 290-301 are better left out of enrollment, so that the generic set stays
unseen as text too).

Output layout (under ``--out``)
-------------------------------
- ``enroll/<id>.flac``, ``test/<id>.flac`` (8 kHz) and ``generic/<id>.flac`` (16 kHz), ids
  ``sample-enroll-L001``, ``sample-generic-L290`` (L + the 1-based line number in
  prompts.txt, zero-padded to 3 digits),
- ``<part>/manifest.jsonl``: one JSON object per line with ``id``, ``audio`` (file name
  relative to the manifest's folder), ``text`` (the line exactly as in prompts.txt),
  ``speaker`` ("sample-speaker"; in generic ``espeak-<voice>``, e.g. "espeak-en-us+f3"),
  ``domain`` ("enroll", "test" or "generic") and ``duration`` (seconds, rounded to 2
  decimals).

The script leaves ``prompts.txt`` and ``README.md`` alone and rewrites only the part folders
named by ``--parts`` (stale ``*.flac`` in them are removed first).
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

#: Generic reference set (forgetting guard): prompt lines (1-based, inclusive), clean
#: full-band speech of other espeak-ng voices, alternated line by line in this order.
GENERIC_LINES = (290, 301)
GENERIC_VOICES = ("en-us", "en-us+f3", "en-gb", "en-us+m5")
#: Rate (wpm), pitch (0-99) and gap between words (``-g``, in units of 10 ms) of every voice.
GENERIC_RATE, GENERIC_PITCH, GENERIC_WORD_GAP = 165, 40, 8
GENERIC_OUT_RATE = 16000
GENERIC_LEVEL_DBFS = -23.0
#: Significant bits kept of the 16-bit samples: the lowest 16 - GENERIC_BITS are zero, which
#: FLAC stores for free ("wasted bits"); keeps the part small at about 55-60 dB SNR.
GENERIC_BITS = 12

PARTS = ("enroll", "test", "generic")


def read_prompts(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines]
    if any(not p for p in prompts):
        raise SystemExit(f"{path}: blank lines are not allowed (line numbers must stay stable)")
    if len(set(prompts)) != len(prompts):
        raise SystemExit(f"{path}: duplicate prompts")
    return prompts


def split_lines(n_prompts: int, n_enroll: int, n_test: int,
                generic: tuple[int, int] = GENERIC_LINES) -> dict[str, list[int]]:
    """0-based prompt indices of each part: enroll = first n_enroll, test = last n_test,
    generic = the 1-based inclusive line range ``generic``; the three must be disjoint."""
    if n_enroll + n_test > n_prompts:
        raise SystemExit(f"need {n_enroll} + {n_test} prompts, prompts.txt has {n_prompts}")
    parts = {"enroll": list(range(n_enroll)),
             "test": list(range(n_prompts - n_test, n_prompts)),
             "generic": list(range(generic[0] - 1, generic[1]))}
    if not parts["generic"] or parts["generic"][-1] >= n_prompts:
        raise SystemExit(f"generic lines {generic[0]}-{generic[1]} are not in prompts.txt "
                         f"({n_prompts} lines)")
    if set(parts["generic"]) & (set(parts["enroll"]) | set(parts["test"])):
        raise SystemExit(f"generic lines {generic[0]}-{generic[1]} overlap enroll "
                         f"(1-{n_enroll}) or test ({n_prompts - n_test + 1}-{n_prompts})")
    return parts


def espeak(text: str, voice: str, rate: int, pitch: int, workdir: Path,
           word_gap: int = 0) -> tuple[np.ndarray, int]:
    """Synthesize ``text`` with espeak-ng; returns float64 mono samples and their rate.
    ``word_gap`` > 0 adds ``-g word_gap`` (pause between words, in units of 10 ms)."""
    wav = workdir / "utt.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch)]
    if word_gap > 0:
        cmd += ["-g", str(word_gap)]
    cmd += ["-w", str(wav), "--stdin"]
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


def clean_full_band(speech: np.ndarray, sr: int) -> np.ndarray:
    """Generic part: pad -> GENERIC_OUT_RATE -> GENERIC_LEVEL_DBFS RMS (peaks <= -1 dBFS) ->
    int16 rounded to GENERIC_BITS significant bits."""
    x = np.concatenate([np.zeros(int(PAD_BEFORE_S * sr)), speech, np.zeros(int(PAD_AFTER_S * sr))])
    g = np.gcd(int(sr), GENERIC_OUT_RATE)
    y = signal.resample_poly(x, GENERIC_OUT_RATE // g, int(sr) // g)
    rms = np.sqrt(np.mean(y ** 2))
    y *= 10 ** (GENERIC_LEVEL_DBFS / 20) / max(rms, 1e-12)
    peak = np.max(np.abs(y))
    if peak > PEAK_MAX:
        y *= PEAK_MAX / peak
    step = 2 ** (16 - GENERIC_BITS)
    return (np.round(y * 32768 / step) * step).clip(-32768, 32767).astype(np.int16)


def make_generic(indices: list[int], prompts: list[str], out: Path, voices: tuple[str, ...],
                 workdir: Path) -> list[dict]:
    """The generic reference set: voice ``voices[k % len(voices)]`` reads the k-th line, at a
    fixed rate and pitch, clean and full band (no room, noise or band limit; no random draw)."""
    domain = "generic"
    folder = out / domain
    if folder.exists():
        for stale in folder.glob("*.flac"):
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, i in enumerate(indices):
        line_no = i + 1
        text = prompts[i]
        voice = voices[k % len(voices)]
        speech, sr = espeak(text, voice, GENERIC_RATE, GENERIC_PITCH, workdir,
                            word_gap=GENERIC_WORD_GAP)
        audio = clean_full_band(trim(speech, sr), sr)
        utt_id = f"sample-{domain}-L{line_no:03d}"
        name = f"{utt_id}.flac"
        sf.write(folder / name, audio, GENERIC_OUT_RATE, format="FLAC", subtype="PCM_16")
        rows.append({"id": utt_id, "audio": name, "text": text, "speaker": f"espeak-{voice}",
                     "domain": domain, "duration": round(len(audio) / GENERIC_OUT_RATE, 2)})
    with open(folder / "manifest.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def parse_parts(value: str) -> tuple[str, ...]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in PARTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--parts takes a comma-separated subset of "
                                         f"{','.join(PARTS)} (got {value!r})")
    return tuple(n for n in PARTS if n in names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("samples"),
                   help="output folder (default: samples); the --parts folders are rewritten")
    p.add_argument("--parts", type=parse_parts, default=PARTS, metavar="LIST",
                   help="comma-separated parts to (re)make, the others are left alone "
                        f"(default: {','.join(PARTS)})")
    p.add_argument("--prompts", type=Path, default=None,
                   help="prompt list, one sentence a line (default: OUT/prompts.txt)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of every random draw (default: {DEFAULT_SEED})")
    p.add_argument("--n-enroll", type=int, default=N_ENROLL,
                   help=f"enrollment = the first N prompt lines (default: {N_ENROLL})")
    p.add_argument("--n-test", type=int, default=N_TEST,
                   help=f"test = the last N prompt lines (default: {N_TEST})")
    p.add_argument("--voice", default=VOICE,
                   help=f"espeak-ng voice of the sample speaker (default: {VOICE})")
    p.add_argument("--generic-voices", default=",".join(GENERIC_VOICES), metavar="LIST",
                   help="comma-separated espeak-ng voices alternated over the generic part "
                        f"(default: {','.join(GENERIC_VOICES)})")
    args = p.parse_args(argv)
    generic_voices = tuple(v.strip() for v in args.generic_voices.split(",") if v.strip())
    if not generic_voices:
        p.error("--generic-voices is empty")

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
        for domain in args.parts:
            if domain == "generic":
                rows = make_generic(parts[domain], prompts, args.out, generic_voices, workdir)
            else:
                rows = make_part(domain, parts[domain], prompts, args.out, args.seed, rir, sr,
                                 args.voice, workdir)
            total = sum(r["duration"] for r in rows)
            lines = parts[domain]
            print(f"{domain}: {len(rows)} utterances (prompt lines {lines[0] + 1}-{lines[-1] + 1}),"
                  f" {total:.1f} s = {total / 60:.2f} min -> {args.out / domain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
