"""Moving a profile between machines: one ``.tar.gz`` archive out, checked and installed in.

Export writes the archive under a temporary name and renames it into place. Import refuses
anything unsafe or foreign (absolute or ``..`` member paths, links, devices, a missing or
damaged profile.json, adapter or manifest) before a byte is written under the profiles
folder, then installs the profile with the same staged rename as :mod:`asr_adapt.profiles.store`.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import zlib
from pathlib import Path

from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.core.files import write_text_atomic
from asr_adapt.data.manifest import MANIFEST_NAME, read_manifest
from asr_adapt.profiles.adapters import ADAPTER_FILES
from asr_adapt.profiles.info import (
    PROFILE_FILE, ProfileError, ProfileInfo, dumps_info, profiles_root, read_info, validate_profile_name,
)
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import (
    ACTIVE, install, make_root, oserror_text, random_tag, recover, remove_path, staging_path,
)

#: What a damaged or foreign ``.tar.gz`` raises while it is opened, listed or extracted.
_UNREADABLE = (tarfile.TarError, OSError, EOFError, zlib.error)


def export_profile(name: str, archive: str | Path, include_audio: bool = True) -> Path:
    """Write profile ``name`` to a ``.tar.gz`` holding one folder ``<name>/``; return its path.

    The archive holds ``profile.json``, the current adapter and, with ``include_audio``,
    the enrollment manifest and recordings. It is written to a temporary file and renamed,
    so a failed export never leaves a truncated archive. ``archive`` may be a folder, in
    which case ``<name>.tar.gz`` is written inside it.
    """
    profile = Profile.open(name)
    archive = Path(archive).expanduser()
    if archive.is_dir():
        archive = archive / f"{name}.tar.gz"
    files = _export_files(profile, include_audio)
    _write_archive(profile, files, archive)
    return archive


def _export_files(profile: Profile, include_audio: bool) -> list[Path]:
    """The files an export holds, all inside the profile folder; refuse what points outside."""
    name = profile.name
    files = [profile.path / PROFILE_FILE]
    folders = [profile.adapter_dir] if profile.adapter_dir else []
    if include_audio and profile.enrollment_manifest.is_file():
        utterances = profile.enrollment_utterances()
        files.append(profile.enrollment_manifest)
        for utterance in utterances:
            if Path(utterance.audio).parent != profile.enrollment_dir:
                raise ProfileError(f"enrollment utterance {utterance.id!r} of '{name}' points "
                                   f"outside the profile ({utterance.audio}); export with "
                                   "--no-audio, or import it with `asr-adapt enroll`")
            files.append(Path(utterance.audio))
    for folder in folders:
        if not folder.is_dir():
            raise ProfileError(f"the adapter folder of '{name}' ({folder}) is missing; train "
                               "again, or export after fixing the profile")
        files += sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return files


def _write_archive(profile: Profile, files: list[Path], archive: Path) -> None:
    """Write ``files`` as ``<name>/...`` to ``archive``: a temporary file, flushed, renamed."""
    name = profile.name
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
        temp = archive.parent / f".{archive.name}.tmp-{os.getpid()}-{random_tag()}"
    except OSError as error:
        raise ProfileError(f"cannot write {archive} ({oserror_text(error)})") from None
    try:
        with open(temp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                _add_files(tar, profile, files)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, archive)
    except OSError as error:
        remove_path(temp)
        raise ProfileError(f"exporting '{name}' to {archive} failed ({oserror_text(error)})") \
            from error
    except BaseException:
        remove_path(temp)
        raise


def _add_files(tar: tarfile.TarFile, profile: Profile, files: list[Path]) -> None:
    """Add ``files`` under ``<name>/``, each folder entry before the first file inside it."""
    name = profile.name
    added: set[str] = set()
    for path in files:
        relative = path.relative_to(profile.path)
        for depth in range(len(relative.parts)):  # the folders first
            folder_name = "/".join((name, *relative.parts[:depth]))
            if folder_name not in added:
                added.add(folder_name)
                info = tarfile.TarInfo(folder_name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                info.mtime = int(profile.path.stat().st_mtime)
                tar.addfile(info)
        arcname = "/".join((name, *relative.parts))
        tar.add(path, arcname=arcname, recursive=False, filter=_without_owner)


def _without_owner(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Drop the exporting user's ids and names from a member."""
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def _not_profile_archive(archive: Path, problem: str) -> ProfileError:
    return ProfileError(f"{archive}: not an asr-adapt profile archive ({problem}); export one "
                        "with `asr-adapt profiles export NAME`")


def _unreadable(archive: Path, error: BaseException) -> ProfileError:
    return _not_profile_archive(archive, f"not a readable .tar.gz: {oserror_text(error)}")


def _check_members(archive: Path, members: list[tarfile.TarInfo]) -> str:
    """Refuse unsafe or foreign members; return the single top-level folder name."""
    tops: set[str] = set()
    for member in members:
        name = member.name
        shown = repr(name)[:80]
        if not name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise _not_profile_archive(archive, f"member {shown} has an absolute path")
        if "\\" in name:
            raise _not_profile_archive(archive, f"member {shown} contains a backslash")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise _not_profile_archive(archive, f"member {shown} leaves the archive with '..'")
        if member.issym() or member.islnk():
            raise _not_profile_archive(archive, f"member {shown} is a link")
        if not (member.isfile() or member.isdir()):
            raise _not_profile_archive(archive, f"member {shown} is a device or special file")
        if not parts:
            continue
        if len(parts) == 1 and not member.isdir():
            raise _not_profile_archive(archive, f"file {shown} lies outside a profile folder")
        tops.add(parts[0])
    if len(tops) != 1:
        found = ", ".join(repr(t) for t in sorted(tops)[:3]) or "none"
        raise _not_profile_archive(archive, f"expected one top-level folder, found "
                                            f"{len(tops)} ({found})")
    return tops.pop()


def _check_safetensors(path: Path) -> bool:
    """True when ``path`` starts like a safetensors file (length + JSON header)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                return False
            size = int.from_bytes(head, "little")
            if size <= 0 or size > 100_000_000:
                return False
            header = json.loads(handle.read(size).decode("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(header, dict)


def _check_extracted(archive: Path, folder: Path, where: str) -> ProfileInfo:
    """Validate an extracted profile folder; return its info."""
    if not (folder / PROFILE_FILE).is_file():
        raise _not_profile_archive(archive, "no profile.json in its folder")
    try:
        info = read_info(folder, where)
    except ProfileError as error:
        raise _not_profile_archive(archive, str(error).split(";")[0]) from None
    if info.adapter is not None:
        adapter = folder / info.adapter
        missing = [name for name in ADAPTER_FILES if not (adapter / name).is_file()]
        if missing:
            raise _not_profile_archive(archive, f"its adapter {info.adapter} lacks "
                                                f"{' and '.join(missing)}")
        try:
            config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise _not_profile_archive(archive, "adapter_config.json is not valid JSON") from None
        peft_type = config.get("peft_type") if isinstance(config, dict) else None
        if peft_type != "LORA":
            raise _not_profile_archive(archive, f"its adapter is not a LoRA adapter "
                                                f"(peft_type {peft_type!r})")
        if not _check_safetensors(adapter / "adapter_model.safetensors"):
            raise _not_profile_archive(archive, "adapter_model.safetensors is not a "
                                                "safetensors file")
    manifest = folder / "enrollment" / MANIFEST_NAME
    if manifest.is_file():
        try:
            utterances = read_manifest(manifest)
        except AsrAdaptError as error:
            raise _not_profile_archive(archive, f"enrollment manifest: {error}") from None
        inside = (folder / "enrollment").resolve()
        for utterance in utterances:
            if not Path(utterance.audio).resolve().is_relative_to(inside):
                raise _not_profile_archive(archive, f"enrollment audio {utterance.id!r} lies "
                                                    "outside the profile")
    return info


def import_profile(archive: str | Path, name: str | None = None, force: bool = False) -> Profile:
    """Install a profile from an archive written by :func:`export_profile`; return it.

    Anything unsafe or foreign is refused before a byte is written to the profile: not a
    readable ``.tar.gz``, members with absolute paths, ``..``, links or device files, not
    exactly one top-level folder, no valid ``profile.json``, or an adapter that is not a
    complete PEFT LoRA adapter. ``name`` installs it under another name. An existing
    profile of that name is replaced only with ``force``.
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise ProfileError(f"{archive}: no such archive file; check the path")
    if name is not None:
        validate_profile_name(name)
    root = profiles_root()
    make_root(root)
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except _UNREADABLE as error:
        raise _unreadable(archive, error) from None
    with tar:
        try:
            members = tar.getmembers()
        except _UNREADABLE as error:
            raise _unreadable(archive, error) from None
        top = _check_members(archive, members)
        if name is None:
            try:
                name = validate_profile_name(top)
            except ProfileError as error:
                raise ProfileError(f"{archive}: holds {error}; give another with --name") from None
        recover(root)
        if (root / name).exists() and not force:
            raise ProfileError(f"profile '{name}' exists; use --force to replace it, or "
                               "--name to import under another name")
        _extract_and_install(tar, members, archive, top, root / name, force)
    return Profile.open(name)


def _extract_and_install(tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path,
                         top: str, target: Path, force: bool) -> None:
    """Extract beside the profiles, check the profile folder ``top``, install it at ``target``.

    The extraction folder is removed whatever happens; a failure leaves no profile behind.
    """
    root = target.parent
    extract = staging_path(root, "archive", "import")
    ACTIVE.add(extract)
    try:
        extract.mkdir()
        _extract(tar, members, extract, archive)
        folder = extract / top
        info = _check_extracted(archive, folder, f"'{top}' in {archive.name}")
        info.name = target.name
        (folder / "reports").mkdir(exist_ok=True)
        (folder / "adapters").mkdir(exist_ok=True)
        (folder / "enrollment").mkdir(exist_ok=True)
        write_text_atomic(folder / PROFILE_FILE, dumps_info(info))
        staging = staging_path(root, target.name, "new")
        ACTIVE.add(staging)
        try:
            os.rename(folder, staging)
            install(staging, target, force)
        finally:
            ACTIVE.discard(staging)
            if staging.exists():
                remove_path(staging)
    except OSError as error:
        raise ProfileError(f"importing {archive} failed ({oserror_text(error)}); check "
                           f"free space in {root}") from error
    finally:
        ACTIVE.discard(extract)
        remove_path(extract)


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], extract: Path, archive: Path) -> None:
    """Extract the checked ``members`` into ``extract`` (with the "data" filter where there is one)."""
    try:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(extract, members=members, filter="data")
        else:  # pragma: no cover - old Pythons; the members were checked above
            tar.extractall(extract, members=members)
    except tarfile.TarError as error:
        raise _not_profile_archive(archive, f"unsafe member: {error}") from None
    except (EOFError, zlib.error) as error:
        raise _unreadable(archive, error) from None
