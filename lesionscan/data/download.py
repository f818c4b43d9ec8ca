"""Fetch HAM10000, or an ISIC 2018 Task 3 held-out set, and unpack it into the layout the package reads.

HAM10000 comes from its official record, Harvard Dataverse doi:10.7910/DVN/DBW86T.
Which files to fetch and their checksums come from the record's dataset API at
run time, so a re-versioned record is verified against what the server
publishes now, not against values frozen in this code.

The ISIC 2018 Task 3 test and validation sets (``download_isic2018``) come from
the challenge's bucket, which publishes no checksums we could look up. What is
verified is what the server states and what the data must be: the size it
announces (HEAD, then Content-Length / Content-Range), the MD5 where its ETag
is one (a single-part S3 upload; a multipart ETag is not, and the progress
output says so), every member's CRC while unpacking, and, before anything is
put in place, ``isic2018.check_report`` with no problems and the published
number of images.

Both go one path. ``pooch.retrieve`` does the checksum bookkeeping (skip a
verified file; verify a download under a temporary name before moving it into
place); ``ResumableDownloader`` adds what pooch's HTTPDownloader lacks: a
partial file kept in ``DIR/.download/`` that a retry or a later run continues
with an HTTP Range request. Unpacking is ours too (``_install``), because
``pooch.Unzip`` writes in place and does not refuse members that would land
outside the target folder: an archive is unpacked under ``DIR/.download/``
and renamed into place, and a marker records what was unpacked, so a second
run fetches nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

from lesionscan import __version__
from lesionscan.core.atomic import atomic_path, write_json
from lesionscan.core.errors import DataError
from lesionscan.data import isic2018
from lesionscan.data.ham10000 import IMAGE_DIRS, MASK_DIR, METADATA_FILE

DOI = "doi:10.7910/DVN/DBW86T"
DATAVERSE = "https://dataverse.harvard.edu"
# Dataverse answers 403 to python-requests' default User-Agent.
USER_AGENT = f"lesionscan/{__version__} (dataset download; python-requests/{requests.__version__})"
STATE_DIR = ".download"
STAGING_DIR = "unpacked"  # DIR/.download/unpacked/FOLDER: an archive unpacked, not yet renamed into DIR/FOLDER
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

# ISIC 2018 Task 3, the challenge's own bucket (the download links of https://challenge.isic-archive.com/data/#2018).
# --mirror replaces this base; the archive names below are appended to it.
ISIC2018_BUCKET = "https://isic-challenge-data.s3.amazonaws.com/2018"
# Images in each held-out set, as the challenge publishes them (challenge.isic-archive.com/data/#2018; Codella et
# al. 2019, arXiv:1902.03368): a download with another count is refused.
ISIC2018_TEST_IMAGES = 1512
ISIC2018_VALIDATION_IMAGES = 193
ISIC2018_PARTS = {"test": ("Test", ISIC2018_TEST_IMAGES), "validation": ("Validation", ISIC2018_VALIDATION_IMAGES)}


def isic2018_archives(part: str) -> dict[str, str]:
    """Archive name -> the folder it unpacks into, for the ``test`` or ``validation`` set (the official names)."""
    if part not in ISIC2018_PARTS:
        raise DataError(f"ISIC 2018 Task 3 set {part!r}: expected one of {', '.join(ISIC2018_PARTS)}")
    word = ISIC2018_PARTS[part][0]
    folders = (f"ISIC2018_Task3_{word}_Input", f"ISIC2018_Task3_{word}_GroundTruth")
    return {f"{folder}.zip": folder for folder in folders}


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where, the checksum it must have ("md5:...", pooch's form, or None when the server
    publishes none), the size the server gives, and who gave them (``source``, for messages)."""

    name: str
    url: str
    checksum: str | None
    size: int | None
    etag: str | None = None
    source: str = "the record"

    @property
    def identity(self) -> str:
        """What the done-marker records: the checksum, else the ETag and size (a changed file changes it)."""
        return self.checksum or f"etag:{self.etag}:size:{self.size}"


def _network_error(url: str, why) -> DataError:
    return DataError(
        f"could not download {url}: {why}. Check the network (a partial download is kept and a rerun "
        f"resumes it), or pass --mirror URL for a copy that serves the same files under the same paths."
    )


def _get(url: str, method: str = "GET", **headers) -> requests.Response:
    """A request with our User-Agent (redirects followed). A refusal (4xx) is final, a DataError; server trouble
    (5xx) and connection failures raise requests' errors, which the callers retry or report."""
    response = requests.request(method, url, headers={"User-Agent": USER_AGENT, **headers}, stream=True,
                                timeout=TIMEOUT, allow_redirects=True)
    if response.status_code >= 400 and response.status_code != 416:
        response.close()
        why = f"HTTP {response.status_code} {response.reason}"
        if response.status_code >= 500:
            raise requests.HTTPError(why)
        raise _network_error(url, why)
    return response


def _base_url(base: str) -> str:
    base = base.rstrip("/")
    if not re.match(r"https?://", base):
        raise DataError(f"mirror {base!r} is not an http(s) URL")
    return base


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
    base = _base_url(base)
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


def _etag_md5(etag: str | None) -> str | None:
    """The MD5 an ETag is, or None: S3 gives a single-part upload's MD5 as its ETag; a multipart ETag
    ("<hex>-<parts>") or a weak one (W/...) is not a checksum of the file."""
    value = (etag or "").strip()
    if value.startswith("W/"):
        return None
    value = value.strip('"')
    return value.lower() if re.fullmatch(r"[0-9a-fA-F]{32}", value) else None


def isic2018_files(part: str, base: str = ISIC2018_BUCKET) -> list[RemoteFile]:
    """The two archives of an ISIC 2018 Task 3 set at ``base``, with the size and ETag their HEAD announces."""
    base = _base_url(base)
    files = []
    for name in isic2018_archives(part):
        url = f"{base}/{name}"
        try:
            with _get(url, method="HEAD") as response:
                length, etag = response.headers.get("Content-Length", ""), response.headers.get("ETag")
        except requests.RequestException as exc:
            raise _network_error(url, exc) from exc
        md5 = _etag_md5(etag)
        files.append(RemoteFile(name, url, f"md5:{md5}" if md5 else None,
                                int(length) if length.isdigit() else None, etag, source="its HEAD response"))
    return files


def _announced_size(response: requests.Response, offset: int) -> int | None:
    """The whole file's size as this response states it (Content-Range's total, else offset + Content-Length);
    None when it states none, or when the body is content-encoded (its length is not the file's)."""
    if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
        return None
    whole = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
    if response.status_code == 206 and whole:
        return int(whole[1])
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


class ResumableDownloader:
    """A pooch downloader that survives dropped connections.

    Bytes go to a stable ``part`` file rather than pooch's throw-away
    temporary, so a retry (or a later run) asks only for the rest with an HTTP
    Range request. When the part is complete it is renamed onto pooch's
    temporary, which pooch then verifies and moves into place. ``actual``
    records the delivered file's checksum for error messages (MD5 when the
    server lists none). A response whose size contradicts the listed one, or
    a file that grows past it, is refused (a DataError, not retried).
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
        alg = (self.remote.checksum or "md5:").split(":")[0]
        self.actual = f"{alg}:{pooch.file_hash(str(self.part), alg)}"
        shutil.move(self.part, output_file)

    def _refuse(self, url: str, what: str) -> DataError:
        self.part.unlink(missing_ok=True)
        return DataError(f"{self.remote.name} from {url}: {what}, but {self.remote.source} lists "
                         f"{self.remote.size:,} bytes; refusing it (the partial download was deleted)")

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
            announced = _announced_size(response, offset)
            if size is not None and announced is not None and announced != size:
                raise self._refuse(url, f"the server sends a file of {announced:,} bytes")
            total = size or announced
            with open(self.part, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=self.remote.name,
                disable=not self.progress, leave=False,
            ) as bar:
                for chunk in response.iter_content(chunk_size=CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = self.part.stat().st_size
        if size is not None and got > size:
            raise self._refuse(url, f"{got:,} bytes arrived")
        if total is not None and got < total:
            raise requests.ConnectionError(f"connection closed after {got} of {total} bytes")


def fetch(remote: RemoteFile, folder: Path, state: Path, progress: bool = True, retries: int = 3) -> Path:
    """Download one file into ``folder`` with its checksum verified; a corrupt copy is deleted and fetched once more.

    A file without a listed checksum is verified by its size alone here (its
    contents by whoever reads it: zip CRCs); a copy of that size already in
    ``folder`` is kept.
    """
    part = state / f"{remote.name}.part"
    if remote.checksum is None:
        target = folder / remote.name
        if not (target.is_file() and remote.size is not None and target.stat().st_size == remote.size):
            downloader = ResumableDownloader(part, remote, progress=progress, retries=retries)
            downloader(remote.url, target, None)
            _say(progress, f"{remote.name}: downloaded {target.stat().st_size:,} bytes, {downloader.actual} "
                           f"({remote.source} gives no checksum to compare it with)")
        return target
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
                    f"but {remote.source} lists {remote.checksum}; the download was deleted")


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
    leaves no trace; every member's CRC is checked as it is read (zipfile), so a
    damaged archive is refused. An existing ``target`` is replaced only once the
    new copy is complete. Returns the number of files written.
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
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # bad CRC, truncated or garbled deflate data
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


def _replace_dir(source: Path, target: Path) -> None:
    """Rename the folder ``source`` to ``target``; an old ``target`` is renamed aside first, deleted after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old)  # onto the empty folder mkdtemp made
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _install(data_dir: Path, archives: list[tuple[RemoteFile, str]], progress: bool, retries: int,
             keep_archives: bool, check: Callable[[Path], None] | None = None) -> list[str]:
    """Fetch, verify and unpack each archive into ``data_dir/FOLDER``; returns the folders it (re)unpacked.

    An archive whose marker (``.download/NAME.done``) records its identity and
    whose folder exists is neither fetched nor unpacked again. Each archive is
    unpacked under ``.download/unpacked/`` and renamed into place, then its
    marker is written and (unless ``keep_archives``) the archive deleted. With
    ``check``, the archives are a set: all of them are unpacked, ``check`` is
    called on the folder holding them, and only if it passes is any renamed
    into place; a set with one archive missing is unpacked whole again.
    """
    state = data_dir / STATE_DIR
    staging = state / STAGING_DIR
    marker = lambda remote: state / f"{remote.name}.done"
    pending = [(r, f) for r, f in archives if not (_marked(marker(r), r.identity) and (data_dir / f).is_dir())]
    if check is not None and pending:
        pending = list(archives)
    for remote, folder in archives:
        if (remote, folder) not in pending:
            _say(progress, f"{remote.name}: already unpacked in {folder}/")

    def commit(done):
        for remote, folder, _, count in done:
            _replace_dir(staging / folder, data_dir / folder)
            write_json(marker(remote), {"archive": remote.name, "checksum": remote.identity, "folder": folder,
                                        "files": count})
            _say(progress, f"{remote.name}: unpacked {count} files into {folder}/")
        for _, _, archive, _ in done:  # only once every folder of the set is in place and marked
            if not keep_archives:
                archive.unlink()

    staged = []
    try:
        for remote, folder in pending:
            archive = fetch(remote, state, state, progress, retries)
            try:
                count = extract(archive, staging / folder)
            except DataError as exc:
                if remote.checksum is not None:
                    raise
                archive.unlink(missing_ok=True)  # bytes nothing vouches for: the next run fetches them anew
                raise DataError(f"{exc}; it was deleted, so a rerun downloads it again") from exc
            staged.append((remote, folder, archive, count))
            if check is None:
                commit(staged)
                staged = []
        if staged:
            check(staging)
            commit(staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder for _, folder in pending]


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
    _install(data_dir, [(r, ARCHIVES[r.name]) for r in remotes if r.name in ARCHIVES], progress, retries,
             keep_archives)
    for remote in remotes:
        if remote.name not in ARCHIVES:
            fetch(remote, data_dir, state, progress, retries)
    return data_dir


def _check_isic2018(folder: Path, part: str, expected: int, where: str) -> isic2018.CheckReport:
    """``isic2018.check_report`` on ``folder``: no problems and ``expected`` labelled images, else a DataError
    that starts with ``where`` (what was downloaded, where it was meant to go) and lists every problem."""
    try:
        report = isic2018.check_report(folder)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
    if report.problems:
        shown = report.problems[:isic2018.MAX_LISTED]
        more = [f"  ... and {len(report.problems) - len(shown)} more"] if len(report.problems) > len(shown) else []
        raise DataError("\n".join([f"{where}: {len(report.problems)} problem(s):"]
                                  + [f"  - {p}" for p in shown] + more))
    if len(report.frame) != expected:
        raise DataError(f"{where}: {len(report.frame):,} labelled images (ground truth "
                        f"{report.ground_truth.name}), but the ISIC 2018 Task 3 {part} set has {expected:,}")
    return report


def download_isic2018(data_dir, part: str = "test", mirror: str | None = None, progress: bool = True,
                      retries: int = 3, keep_archives: bool = False,
                      expected_images: int | None = None) -> isic2018.CheckReport:
    """Fetch an ISIC 2018 Task 3 set (``test`` or ``validation``) into ``data_dir`` as its archives unpack:
    ``DIR/ISIC2018_Task3_Test_Input/ISIC_*.jpg`` and ``DIR/ISIC2018_Task3_Test_GroundTruth/*.csv``.

    ``mirror`` replaces the bucket's base URL (the archive names are appended).
    Both archives are unpacked under ``DIR/.download/`` and must pass
    ``isic2018.check_report`` with no problems and ``expected_images`` images
    (default: the set's published count) before either is renamed into place.
    Idempotent as ``download`` is: a second run fetches nothing (it asks the
    server for the sizes and ETags, and checks the folder again). Returns the
    check's report of ``data_dir``.
    """
    archives = isic2018_archives(part)
    expected = ISIC2018_PARTS[part][1] if expected_images is None else expected_images
    data_dir = Path(data_dir)
    if data_dir.is_dir():  # one ground truth per folder: check_report reads exactly one
        others = [p for p in isic2018.ground_truth_files(data_dir) if p.parent.name not in archives.values()]
        if others:
            raise DataError(f"{data_dir} already holds the ground truth {others[0].relative_to(data_dir)}; put the "
                            f"ISIC 2018 {part} set in a folder of its own")
    remotes = isic2018_files(part, mirror or ISIC2018_BUCKET)  # before creating anything
    for remote in remotes:
        size = f"{remote.size:,} bytes" if remote.size is not None else "no size announced"
        if remote.checksum:
            how = f"checked against the MD5 in the server's ETag ({remote.checksum})"
        else:
            how = (f"the server's ETag ({remote.etag or 'none'}) is not an MD5 (a multipart upload gives "
                   f"'<hex>-<parts>'), so only the size and the zip's CRCs can be checked")
        _say(progress, f"{remote.name}: {size}; {how}")
    (data_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    where = f"the ISIC 2018 Task 3 {part} set from {remotes[0].url.rsplit('/', 1)[0]}"
    _install(data_dir, [(r, archives[r.name]) for r in remotes], progress, retries, keep_archives,
             check=lambda staged: _check_isic2018(staged, part, expected,
                                                  f"{where} fails its check, so nothing was put in {data_dir} "
                                                  f"(the archives stay in {data_dir / STATE_DIR})"))
    return _check_isic2018(data_dir, part, expected, f"{data_dir} (the ISIC 2018 Task 3 {part} set)")
