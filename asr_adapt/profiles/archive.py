"""Moving a profile between machines: one ``.tar.gz`` archive out, checked and installed in.

Export writes the archive under a temporary name and renames it into place. Import refuses
anything unsafe or foreign (absolute or ``..`` member paths, links, devices, a missing or
damaged profile.json, adapter or manifest) before a byte is written under the profiles
folder, then installs the profile with the same staged rename as :mod:`asr_adapt.profiles.store`.
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from pathlib import Path

from asr_adapt.core import faults
from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.core.files import check_output_file, write_text_atomic
from asr_adapt.data.manifest import MANIFEST_NAME, read_manifest
from asr_adapt.profiles.adapters import ADAPTER_FILES, ADAPTER_FOLDER_FILES, adapter_problem
from asr_adapt.profiles.info import (
    PROFILE_FILE, ProfileError, ProfileInfo, dumps_info, profiles_root, read_info, validate_profile_name,
)
from asr_adapt.profiles.locks import profile_lock
from asr_adapt.profiles.profile import Profile
from asr_adapt.profiles.store import (
    ACTIVE, install, make_root, oserror_text, random_tag, recover, remove_path, staging_path,
)

#: What a damaged or foreign ``.tar.gz`` raises while it is opened, listed or extracted.
_UNREADABLE = (tarfile.TarError, OSError, EOFError, zlib.error)
#: Bounds on what an archive may hold, checked member by member before anything is extracted
#: (a profile with two hours of enrollment audio and a large adapter is far inside them).
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 1 << 30
MAX_DEPTH = 6
MAX_MEMBER_NAME = 512
#: Where files may lie inside the profile folder of an archive, and nowhere else.
_ALLOWED_FILE = re.compile(r"profile\.json|enrollment/(manifest\.jsonl|[A-Za-z0-9][A-Za-z0-9._-]*\.flac)"
                           r"|adapters/[A-Za-z0-9][A-Za-z0-9._-]*/(" + "|".join(
                               re.escape(name) for name in sorted(ADAPTER_FOLDER_FILES)) + ")")


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
    check_output_file(archive, "the archive")  # never renamed over a device, a pipe or a folder
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


def _read_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, read one header at a time and refused as soon as they pass a
    bound (count, declared size, depth, name length): a tar bomb is stopped at its first
    oversized header, before its data is decompressed, let alone written."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while True:
        try:
            member = tar.next()
        except _UNREADABLE as error:
            raise _unreadable(archive, error) from None
        if member is None:
            return members
        members.append(member)
        total += max(member.size, 0)
        if len(members) > MAX_MEMBERS:
            raise _not_profile_archive(archive, f"more than {MAX_MEMBERS:,} members")
        if total > MAX_UNPACKED_BYTES:
            raise _not_profile_archive(archive, f"it would unpack to more than {MAX_UNPACKED_BYTES >> 30} GiB")
        if len(member.name) > MAX_MEMBER_NAME or member.name.count("/") > MAX_DEPTH:
            raise _not_profile_archive(archive, f"member {member.name[:60]!r}... is nested too deeply or named too long")


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
        if member.isfile() and not _ALLOWED_FILE.fullmatch("/".join(parts[1:])):
            raise _not_profile_archive(archive, f"file {shown} is not part of a profile (profile.json, "
                                                "enrollment FLACs and manifest, adapter config and safetensors)")
        tops.add(parts[0])
    if len(tops) != 1:
        found = ", ".join(repr(t) for t in sorted(tops)[:3]) or "none"
        raise _not_profile_archive(archive, f"expected one top-level folder, found "
                                            f"{len(tops)} ({found})")
    return tops.pop()


def _check_base_model(archive: Path, info: ProfileInfo, allow_model: bool) -> None:
    """An imported profile names the model it runs on, and that name is then loaded: only a
    model this installation ships (with the weights the profile was made on) is taken on the
    archive's word; any other (a hub id, a local path) only when the user allows it."""
    from asr_adapt.core.errors import ModelError
    from asr_adapt.models.bundled import ALIASES, BUNDLED
    from asr_adapt.models.loading import bundled_weights_sha256

    name = ALIASES.get(info.base_model, info.base_model)
    if name not in BUNDLED:
        if allow_model:
            return
        raise ProfileError(f"{archive}: its profile runs on {info.base_model[:80]!r}, which is not a model bundled "
                           "with asr-adapt; if you trust that model, import with --allow-model")
    try:
        sha = bundled_weights_sha256(BUNDLED[name])
    except ModelError as error:
        raise ProfileError(f"{archive}: its profile runs on {error}") from None
    recorded = info.base_weights_sha256
    if recorded and recorded != sha:
        raise ProfileError(f"{archive}: its profile was made on other weights of {name} (sha256 {recorded[:12]}, "
                           f"here {sha[:12]}); enroll again on this installation")


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
        problem = adapter_problem(adapter)
        if problem:
            raise _not_profile_archive(archive, problem)
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


def import_profile(archive: str | Path, name: str | None = None, force: bool = False,
                   allow_model: bool = False) -> Profile:
    """Install a profile from an archive written by :func:`export_profile`; return it.

    Anything unsafe or foreign is refused before a byte is written to the profile: not a
    readable ``.tar.gz``, members with absolute paths, ``..``, links or device files, not
    exactly one top-level folder, no valid ``profile.json``, or an adapter that is not a
    complete PEFT LoRA adapter whose every tensor reads, or a base model this installation
    does not ship (or ships with other weights) unless ``allow_model``. Bounds on member
    count, unpacked size and depth stop archive bombs before extraction. ``name`` installs it
    under another name. An existing profile of that name is replaced only with ``force``.
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
        members = _read_members(tar, archive)
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
        _extract_and_install(tar, members, archive, top, root / name, force, allow_model)
    return Profile.open(name)


def _extract_and_install(tar: tarfile.TarFile, members: list[tarfile.TarInfo], archive: Path,
                         top: str, target: Path, force: bool, allow_model: bool) -> None:
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
        _check_base_model(archive, info, allow_model)
        faults.reached("import-extracted")
        info.name = target.name
        (folder / "reports").mkdir(exist_ok=True)
        (folder / "adapters").mkdir(exist_ok=True)
        (folder / "enrollment").mkdir(exist_ok=True)
        write_text_atomic(folder / PROFILE_FILE, dumps_info(info))
        staging = staging_path(root, target.name, "new")
        ACTIVE.add(staging)
        try:
            os.rename(folder, staging)
            with profile_lock(target.name, "import it"):
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
