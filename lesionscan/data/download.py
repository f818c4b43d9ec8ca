"""Fetch HAM10000 from its official record and unpack it into the layout ``data.load_dataset`` reads.

The record is Harvard Dataverse doi:10.7910/DVN/DBW86T. Which files to fetch
and their checksums come from the record's dataset API at run time, so a
re-versioned record is verified against what the server publishes now, not
against values frozen in this code. ``pooch.retrieve`` does the checksum
bookkeeping (skip a verified file; verify a download under a temporary name
before moving it into place); ``ResumableDownloader`` adds what pooch's
HTTPDownloader lacks: a partial file kept in ``DIR/.download/`` that a retry
or a later run continues with an HTTP Range request. Unpacking is ours too,
because ``pooch.Unzip`` writes in place and does not refuse members that
would land outside the target folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

from lesionscan import __version__
from lesionscan.core.atomic import atomic_path, write_json
from lesionscan.core.errors import DataError
from lesionscan.data.ham10000 import IMAGE_DIRS, MASK_DIR, METADATA_FILE

DOI = "doi:10.7910/DVN/DBW86T"
DATAVERSE = "https://dataverse.harvard.edu"
# Dataverse answers 403 to python-requests' default User-Agent.
USER_AGENT = f"lesionscan/{__version__} (HAM10000 download; python-requests/{requests.__version__})"
STATE_DIR = ".download"
TIMEOUT = (15, 60)  # seconds to connect, seconds between bytes
RETRY_WAIT = 2.0  # seconds times the attempt number, between resumed attempts
CHUNK = 1 << 16  # bytes per read; a dropped connection loses at most the chunk being read

# Archive name in the record -> folder it is unpacked into (the official names).
ARCHIVES = {
    f"{IMAGE_DIRS[0]}.zip": IMAGE_DIRS[0],
    f"{IMAGE_DIRS[1]}.zip": IMAGE_DIRS[1],
    f"{MASK_DIR}.zip": MASK_DIR,
}
# Dataverse ingests the uploaded CSV and lists it as a .tab; its checksum is the uploaded CSV's.
METADATA_NAMES = ("HAM10000_metadata.tab", "HAM10000_metadata.csv")

# Datafile ids (and MD5 where published) that public download scripts use. Only a
# cross-check, never the source of truth: a listed file with one of these ids
# must carry this MD5 (Dataverse files are immutable; a new version gets a new id).
KNOWN_FILES = {
    3172585: ("HAM10000_images_part_1.zip", None),
    3172584: ("HAM10000_images_part_2.zip", None),
    4338392: ("HAM10000_metadata.tab", None),  # ?format=original gives the CSV
    3838943: ("HAM10000_segmentations_lesion_tschandl.zip", "6e8d252e09cfdb0189199f15985a5b84"),
}


@dataclass(frozen=True)
class RemoteFile:
    """One file of the record: where to get it and the checksum it must have ("md5:...", pooch's form)."""

    name: str
    url: str
    checksum: str
    size: int | None


def _network_error(url: str, why) -> DataError:
    return DataError(
        f"could not download {url}: {why}. Check the network (a partial download is kept and a rerun "
        f"resumes it), or pass --mirror URL for a copy that serves the same Dataverse API paths."
    )


def _get(url: str, **headers) -> requests.Response:
    """GET with our User-Agent. A refusal (4xx) is final, a DataError; server trouble (5xx) and
    connection failures raise requests' errors, which the callers retry or report."""
    response = requests.get(url, headers={"User-Agent": USER_AGENT, **headers}, stream=True, timeout=TIMEOUT)
    if response.status_code >= 400 and response.status_code != 416:
        response.close()
        why = f"HTTP {response.status_code} {response.reason}"
        if response.status_code >= 500:
            raise requests.HTTPError(why)
        raise _network_error(url, why)
    return response


def _checksum(entry: dict) -> str:
    """The checksum Dataverse lists for a file, as pooch's "alg:hex" (older servers give only "md5")."""
    checksum = entry.get("checksum") or ({"type": "MD5", "value": entry["md5"]} if entry.get("md5") else None)
    alg = str((checksum or {}).get("type", "")).lower().replace("-", "")
    if not checksum or alg not in hashlib.algorithms_available:
        raise DataError(f"the dataset API lists no usable checksum for {entry.get('filename')}; refusing an "
                        "unverified download")
    return f"{alg}:{str(checksum['value']).lower()}"


def list_files(base: str = DATAVERSE) -> list[RemoteFile]:
    """The files this study needs, chosen by name from the record's current listing at ``base``."""
    base = base.rstrip("/")
    if not re.match(r"https?://", base):
        raise DataError(f"mirror {base!r} is not an http(s) URL")
    url = f"{base}/api/datasets/:persistentId/?persistentId={DOI}"
    try:
        response = _get(url)
    except requests.RequestException as exc:
        raise _network_error(url, exc) from exc
    try:
        entries = [f["dataFile"] for f in response.json()["data"]["latestVersion"]["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{url} did not answer with a Dataverse dataset listing ({exc!r}); is --mirror right?") from exc
    by_name = {e.get("filename") or e.get("label"): e for e in entries}
    wanted = list(ARCHIVES) + [next((n for n in METADATA_NAMES if n in by_name), METADATA_NAMES[0])]
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise DataError(f"{url} lists no {', '.join(missing)} (it lists {', '.join(sorted(by_name)) or 'nothing'})")
    files = []
    for name in wanted:
        entry = by_name[name]
        checksum = _checksum(entry)
        known = KNOWN_FILES.get(entry.get("id"), (None, None))[1]
        if known and checksum.startswith("md5:") and checksum != f"md5:{known}":
            raise DataError(f"{url} lists {name} (datafile {entry['id']}) with checksum {checksum}, "
                            f"but that datafile is published with md5:{known}; not trusting this listing")
        file_url = f"{base}/api/access/datafile/{entry['id']}"
        if name in METADATA_NAMES:
            name = METADATA_FILE  # the uploaded CSV, which the listed checksum describes
            tabular = entry.get("originalFileFormat") or entry.get("filename", "").endswith(".tab")
            file_url += "?format=original" if tabular else ""
        size = entry.get("originalFileSize") if "format=original" in file_url else entry.get("filesize")
        files.append(RemoteFile(name, file_url, checksum, size))
    return files


class ResumableDownloader:
    """A pooch downloader that survives dropped connections.

    Bytes go to a stable ``part`` file rather than pooch's throw-away
    temporary, so a retry (or a later run) asks only for the rest with an HTTP
    Range request. When the part is complete it is renamed onto pooch's
    temporary, which pooch then verifies and moves into place. ``actual``
    records the delivered file's checksum for error messages.
    """

    def __init__(self, part: Path, remote: RemoteFile, progress: bool = True, retries: int = 3):
        self.part, self.remote, self.progress, self.retries = part, remote, progress, retries
        self.actual: str | None = None

    def __call__(self, url, output_file, pooch_obj, check_only=False):
        self.part.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(self.retries + 1):
            try:
                self._fetch(url)
                break
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise _network_error(url, exc) from exc
                print(f"{self.remote.name}: {exc}; resuming", file=sys.stderr)
                time.sleep(RETRY_WAIT * (attempt + 1))
        alg = self.remote.checksum.split(":")[0]
        self.actual = f"{alg}:{pooch.file_hash(str(self.part), alg)}"
        shutil.move(self.part, output_file)

    def _fetch(self, url: str) -> None:
        """Fetch what the part file lacks; raise ConnectionError if the server stops short."""
        from tqdm.auto import tqdm

        size = self.remote.size
        offset = self.part.stat().st_size if self.part.exists() else 0
        if size is not None and offset > size:
            offset = 0
        if size is not None and offset == size and offset > 0:
            return
        response = _get(url, **({"Range": f"bytes={offset}-"} if offset else {}))
        with response:
            if response.status_code == 416:  # nothing left to send: the part is whole
                return
            content_range = response.headers.get("Content-Range", "")
            resumed = response.status_code == 206 and content_range.startswith(f"bytes {offset}-")
            offset = offset if resumed else 0
            total = size or (offset + int(response.headers.get("Content-Length", 0))) or None
            with open(self.part, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=self.remote.name,
                disable=not self.progress, leave=False,
            ) as bar:
                for chunk in response.iter_content(chunk_size=CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = self.part.stat().st_size
        if size is not None and got < size:
            raise requests.ConnectionError(f"connection closed after {got} of {size} bytes")


def fetch(remote: RemoteFile, folder: Path, state: Path, progress: bool = True, retries: int = 3) -> Path:
    """Download one file into ``folder`` with its checksum verified; a corrupt copy is deleted and fetched once more."""
    part = state / f"{remote.name}.part"
    for attempt in (1, 2):
        downloader = ResumableDownloader(part, remote, progress=progress, retries=retries)
        try:
            return Path(pooch.retrieve(remote.url, known_hash=remote.checksum, fname=remote.name,
                                       path=folder, downloader=downloader))
        except ValueError:  # pooch found a checksum mismatch and deleted the download
            part.unlink(missing_ok=True)
            if downloader.actual is None or downloader.actual == remote.checksum:
                raise
            print(f"{remote.name}: checksum {downloader.actual} is not the listed {remote.checksum}; "
                  f"deleted it{', fetching again' if attempt == 1 else ''}", file=sys.stderr)
    raise DataError(f"{remote.name} from {remote.url} is corrupt: twice it had checksum {downloader.actual}, "
                    f"but the record lists {remote.checksum}; the download was deleted")


def _members(archive: zipfile.ZipFile, name: str, target: Path) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """Each file member with its path inside ``target``; refuse the archive if any member could escape it.

    A single top folder shared by every member is dropped, so archives packed
    with or without one (the segmentation zip has one, the image zips do not)
    land in the same place. macOS resource forks are skipped.
    """
    members = []
    for info in archive.infolist():
        path = info.filename.replace("\\", "/")
        parts = path.split("/")
        why = ("is a symlink" if stat.S_ISLNK(info.external_attr >> 16) else
               "is an absolute path" if path.startswith("/") or re.match(r"[A-Za-z]:", path) else
               "climbs out with '..'" if ".." in parts else None)
        if why:
            raise DataError(f"{name}: member {info.filename!r} {why}, so it could land outside {target}; "
                            f"refusing to unpack anything from this archive")
        parts = [p for p in parts if p not in ("", ".")]
        if not info.is_dir() and parts and parts[0] != "__MACOSX":
            members.append((info, parts))
    tops = {parts[0] for _, parts in members}
    if len(tops) == 1 and all(len(parts) > 1 for _, parts in members):
        members = [(info, parts[1:]) for info, parts in members]
    return members


def extract(archive_path: Path, target: Path) -> int:
    """Unpack a zip into ``target`` all at once: written beside it under a temporary name, then renamed.

    Every member is checked before anything is written, so a hostile archive
    leaves no trace. An existing ``target`` is replaced only once the new copy
    is complete. Returns the number of files written.
    """
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _members(archive, archive_path.name, target)
            with atomic_path(target) as tmp:
                for info, parts in members:
                    out = tmp.joinpath(*parts)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                tmp.mkdir(exist_ok=True)
                if target.exists():
                    shutil.rmtree(target)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive_path} is not a readable zip archive ({exc})") from exc
    return len(members)


def _marked(marker: Path, checksum: str) -> bool:
    """Whether a previous run unpacked the archive with this checksum (an unreadable marker means no)."""
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("checksum") == checksum
    except (OSError, ValueError, AttributeError):
        return False


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


def download(data_dir, mirror: str | None = None, progress: bool = True, retries: int = 3,
             keep_archives: bool = False) -> Path:
    """Fetch the record's images, masks and metadata into ``data_dir`` in the official layout.

    Idempotent: an archive whose marker (``.download/NAME.done``) records the
    listed checksum, and whose folder exists, is neither fetched nor unpacked
    again; the metadata file is re-fetched only if its checksum is wrong.
    Archives are deleted once unpacked unless ``keep_archives``.
    """
    remotes = list_files(mirror or DATAVERSE)  # before creating anything, so a bad --mirror leaves no trace
    data_dir = Path(data_dir)
    state = data_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    for remote in remotes:
        folder = ARCHIVES.get(remote.name)
        if folder is None:
            fetch(remote, data_dir, state, progress, retries)
            continue
        marker = state / f"{remote.name}.done"
        if _marked(marker, remote.checksum) and (data_dir / folder).is_dir():
            _say(progress, f"{remote.name}: already unpacked in {folder}/")
            continue
        archive = fetch(remote, state, state, progress, retries)
        count = extract(archive, data_dir / folder)
        _say(progress, f"{remote.name}: unpacked {count} files into {folder}/")
        write_json(marker, {"archive": remote.name, "checksum": remote.checksum, "folder": folder, "files": count})
        if not keep_archives:
            archive.unlink()
    return data_dir
