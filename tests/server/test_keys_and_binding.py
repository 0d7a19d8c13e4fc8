"""Who may connect: API keys made by the CLI (stored hashed, read again when the file changes),
and a server without keys that only listens on, and answers to, this machine."""

from __future__ import annotations

import json
import os
import stat

import pytest

from server_harness import request, running_server, write_keys

from asr_adapt.cli.main import main
from asr_adapt.core.errors import OptionsError
from asr_adapt.server.keys import KeyRing
from asr_adapt.server.options import ServeOptions


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_without_keys_only_loopback_is_allowed(host, tmp_path, capsys):
    with pytest.raises(OptionsError, match="without --api-keys"):
        ServeOptions(host=host)
    assert main(["serve", "--host", host]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr-adapt: error: refusing to listen") and err.count("\n") == 1
    ServeOptions(host=host, api_keys=tmp_path / "keys.txt")  # with keys it may


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_keys(host):
    assert ServeOptions(host=host).host == host


def test_add_key_prints_a_key_once_and_stores_only_its_hash(tmp_path, capsys):
    keys = tmp_path / "keys.txt"
    assert main(["serve", "--add-key", str(keys), "--profiles", "alice,bob", "--label", "laptop"]) == 0
    key = capsys.readouterr().out.strip()
    assert main(["serve", "--add-key", str(keys), "--profiles", "*"]) == 0
    other = capsys.readouterr().out.strip()
    stored = keys.read_text()
    assert key not in stored and other not in stored and "laptop" in stored
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    ring = KeyRing(keys)
    assert ring.check(key).profiles == frozenset({"alice", "bob"})
    assert ring.check(other).profiles is None  # every profile
    assert ring.check(key + "x") is None and ring.check("") is None and ring.check(None) is None
    assert main(["serve", "--add-key", str(keys), "--profiles", "../etc"]) == 2


def test_a_damaged_keys_file_is_refused_at_start(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("sha256:abc alice\n")
    with pytest.raises(OptionsError, match="keys.txt:1"):
        KeyRing(keys)


def test_keys_added_while_serving_are_accepted(tmp_path):
    keys = write_keys(tmp_path / "keys.txt", {"aa-first": "*"})
    with running_server(ServeOptions(api_keys=keys)) as server:
        assert request(server.base_url, "GET", "/v1/models", headers={"Authorization": "Bearer aa-first"})[0] == 200
        assert request(server.base_url, "GET", "/v1/models", headers={"Authorization": "Bearer aa-second"})[0] == 401
        write_keys(keys, {"aa-second": "alice"})  # the first is revoked, the second added
        os.utime(keys, ns=(0, 10**18))  # a new stamp even on a coarse clock
        assert request(server.base_url, "GET", "/v1/models", headers={"Authorization": "Bearer aa-second"})[0] == 200
        assert request(server.base_url, "GET", "/v1/models", headers={"Authorization": "Bearer aa-first"})[0] == 401


def test_a_server_without_keys_answers_only_to_this_machines_names(home):
    with running_server(ServeOptions()) as server:
        status, body = request(server.base_url, "GET", "/v1/models")
        assert status == 200 and body["object"] == "list" and "whisper-tiny.en" in {m["id"] for m in body["data"]}
        # A page on a domain that resolves to 127.0.0.1 (DNS rebinding) is refused.
        status, body = request(server.base_url, "GET", "/v1/models", headers={"Host": "evil.example:8000"})
        assert status == 400 and body["error"]["code"] == "invalid_host"
        status, page = request(server.base_url, "GET", "/")
        assert status == 200 and "<html" in page.lower()


def test_errors_of_unknown_routes_are_openai_style(home):
    with running_server(ServeOptions()) as server:
        status, body = request(server.base_url, "POST", "/v1/audio/translations")
        assert status == 404 and json.dumps(body).startswith('{"error": {')
