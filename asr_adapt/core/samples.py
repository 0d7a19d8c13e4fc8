"""Where the shipped sample audio and prompts are.

``samples/`` (the sample speaker, generic voices and reading prompts the project generates with
espeak-ng, see ``samples/README.md``) lives at the root of the source checkout, beside the
package; an editable install (``scripts/install.sh``) finds it there. Anywhere else, point
``ASR_ADAPT_SAMPLES`` at a copy of that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that overrides where samples/ is.
SAMPLES_ENV = "ASR_ADAPT_SAMPLES"
#: samples/ in a source checkout: asr_adapt/core/samples.py -> repository root.
CHECKOUT_SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def samples_dir() -> Path:
    """The samples folder: ``$ASR_ADAPT_SAMPLES`` when set, else the checkout's ``samples/``."""
    override = os.environ.get(SAMPLES_ENV)
    return Path(override).expanduser() if override else CHECKOUT_SAMPLES


#: Resolved once at import: the default prompts and reference sets below are read from here.
SAMPLES_DIR = samples_dir()
#: The reading prompts enrollment offers by default.
DEFAULT_PROMPTS = SAMPLES_DIR / "prompts.txt"
#: The generic reference set (voices that are not the user's): the forgetting guard.
GENERIC_MANIFEST = SAMPLES_DIR / "generic" / "manifest.jsonl"
