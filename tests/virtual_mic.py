"""A real virtual microphone for end-to-end tests: a private PulseAudio daemon with a null
sink whose monitor is the default source (recipe in ../shared/DESIGN.md). What is played
into the sink with ``paplay --device=vmic`` is what sounddevice records from 'default'."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SINK = "vmic"


def require_pulseaudio() -> None:
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install pulseaudio pulseaudio-utils "
                    "libasound2-plugins): no virtual microphone")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def virtual_microphone():
    """Start a private PulseAudio daemon; yield the environment its clients need; always
    stop it (by its PID) and remove its folder."""
    require_pulseaudio()
    folder = Path(tempfile.mkdtemp(prefix="vmic-"))  # short: unix socket paths are limited
    runtime = folder / "runtime"
    runtime.mkdir()
    socket = folder / "native"
    env = {**os.environ, "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder),
           "PULSE_RUNTIME_PATH": str(runtime), "PULSE_SERVER": f"unix:{socket}"}
    log = open(folder / "pulseaudio.log", "wb")  # noqa: SIM115 (a file, not a pipe: a full pipe would block it)
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--disallow-exit",
         "--use-pid-file=no", "--log-target=stderr",
         f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}",
         f"--load=module-null-sink sink_name={SINK} rate=16000 channels=1"],
        env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if daemon.poll() is not None:
                lines = (folder / "pulseaudio.log").read_text(errors="replace").strip().splitlines()
                pytest.fail(f"pulseaudio did not start: {lines[-1] if lines else 'no message'}")
            ready = subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], env=env,
                                   capture_output=True, timeout=10, check=False)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"pulseaudio did not come up: {ready.stderr.decode(errors='replace')}")
            time.sleep(0.2)
        yield env
    finally:
        _stop(daemon)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def play(env: dict, path: Path, timeout: float = 60) -> None:
    """Play an audio file into the virtual microphone (returns when it has been played)."""
    subprocess.run(["paplay", f"--device={SINK}", str(path)], env=env, check=True, timeout=timeout)
