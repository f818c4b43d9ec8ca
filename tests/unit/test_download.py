"""`data download` against a fake Dataverse on 127.0.0.1: verified, resumable, idempotent, safe unpacking.

The fake serves the dataset API and /api/access/datafile/ID like Harvard
Dataverse (Range requests, a refusal of other User-Agents, the metadata as a
.tab unless ?format=original), and can be told to stop a response midway or to
serve corrupt bytes. Nothing here touches the internet.
"""

import hashlib
import io
import json
import re
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from PIL import Image

from lesionscan import cli
from lesionscan.core.errors import DataError
from lesionscan.data import download, ham10000

IMAGE_IDS = [f"ISIC_00{i:05d}" for i in range(6)]
DX = ["nv", "mel", "bkl", "bcc", "nv", "df"]
PART_1, PART_2, META, SEG = 101, 102, 103, 104


def _image(i: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.new("RGB", (8, 6), (40 * i % 256, 90, 120)).save(buffer, fmt)
    else:
        Image.new("L", (8, 6), 255).save(buffer, fmt)
    return buffer.getvalue()


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _files() -> dict:
    """Datafile id -> (name in the record, bytes): part 1 at the zip's root, part 2 and masks under a top folder."""
    csv = "lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n" + "".join(
        f"HAM_{i:07d},{image_id},{dx},histo,{40 + i}.0,male,back,vidir_modern\n"
        for i, (image_id, dx) in enumerate(zip(IMAGE_IDS, DX)))
    return {
        PART_1: ("HAM10000_images_part_1.zip",
                 _zip({f"{n}.jpg": _image(i, "JPEG") for i, n in enumerate(IMAGE_IDS[:3])})),
        PART_2: ("HAM10000_images_part_2.zip",
                 _zip({f"HAM10000_images_part_2/{n}.jpg": _image(i, "JPEG") for i, n in enumerate(IMAGE_IDS[3:])})),
        META: ("HAM10000_metadata.tab", csv.encode()),
        SEG: ("HAM10000_segmentations_lesion_tschandl.zip",
              _zip({f"HAM10000_segmentations_lesion_tschandl/{n}_segmentation.png": _image(0, "PNG")
                    for n in IMAGE_IDS})),
    }


class FakeDataverse:
    """A Dataverse look-alike; ``cut`` and ``corrupt`` change how the next responses for a datafile go wrong."""

    def __init__(self):
        self.files = _files()
        self.log = []  # (path, headers) of every request
        self.cut = set()  # datafile ids whose next response stops halfway
        self.corrupt = {}  # datafile id -> how many more responses get flipped bytes
        self.ranges = True  # False: ignore Range headers, as some proxies do
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.log.append((self.path, dict(self.headers)))
                if not self.headers.get("User-Agent", "").startswith("lesionscan/"):
                    return self.send_error(403, "Forbidden")
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                match = re.fullmatch(r"/api/access/datafile/(\d+)", url.path)
                if url.path == "/api/datasets/:persistentId/" and query.get("persistentId") == [download.DOI]:
                    return self._send(200, json.dumps(fake.listing()).encode(), {})
                if not match or int(match[1]) not in fake.files:
                    return self.send_error(404, "Not Found")
                file_id = int(match[1])
                body = fake.files[file_id][1]
                if file_id == META and query.get("format") != ["original"]:
                    body = body.replace(b",", b"\t")  # what Dataverse's ingest serves by default
                if fake.corrupt.get(file_id):
                    fake.corrupt[file_id] -= 1
                    body = body[:-20] + bytes(b ^ 0xFF for b in body[-20:])
                asked = self.headers.get("Range", "bytes=0-")
                start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1]) if fake.ranges else 0
                headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"} if start else {}
                self._send(206 if start else 200, body[start:], headers, cut=file_id in fake.cut)
                fake.cut.discard(file_id)

            def _send(self, code, body, headers, cut=False):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def listing(self) -> dict:
        files = []
        for file_id, (name, body) in self.files.items():
            entry = {"id": file_id, "filename": name, "filesize": len(body),
                     "checksum": {"type": "MD5", "value": hashlib.md5(body).hexdigest()}}
            if name.endswith(".tab"):
                entry |= {"originalFileFormat": "text/csv", "originalFileSize": len(body), "filesize": len(body) + 7}
            files.append({"label": name, "dataFile": entry})
        return {"status": "OK", "data": {"latestVersion": {"files": files}}}

    def requests_for(self, file_id):
        return [(path, headers) for path, headers in self.log if path.startswith(f"/api/access/datafile/{file_id}")]


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT", 0)
    monkeypatch.setattr(download, "CHUNK", 256)  # the test files are a few kB; keep most of a cut-off one
    server = FakeDataverse()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _download(fake, folder, **kwargs):
    return download.download(folder, mirror=fake.url, progress=False, **kwargs)


def test_download_unpacks_into_the_layout_load_dataset_reads(fake, tmp_path):
    folder = _download(fake, tmp_path / "data")
    frame = ham10000.load_dataset(folder)
    assert list(frame["image_id"]) == IMAGE_IDS and frame["mask_path"].notna().all()
    assert (folder / "HAM10000_images_part_1" / f"{IMAGE_IDS[0]}.jpg").is_file()
    assert (folder / "HAM10000_images_part_2" / f"{IMAGE_IDS[5]}.jpg").is_file()
    assert (folder / "HAM10000_metadata.csv").read_bytes() == fake.files[META][1]  # the original CSV, not the .tab
    assert all(h["User-Agent"].startswith("lesionscan/") for _, h in fake.log)
    assert sorted(p.name for p in (folder / ".download").iterdir()) == [
        f"{name}.done" for name in sorted(download.ARCHIVES)]  # archives and partial files gone


def test_a_second_run_downloads_and_unpacks_nothing(fake, tmp_path):
    folder = _download(fake, tmp_path / "data")
    image = folder / "HAM10000_images_part_1" / f"{IMAGE_IDS[0]}.jpg"
    before, stamp = len(fake.log), image.stat().st_mtime_ns
    _download(fake, folder)
    assert [path for path, _ in fake.log[before:]] == [f"/api/datasets/:persistentId/?persistentId={download.DOI}"]
    assert image.stat().st_mtime_ns == stamp


def test_an_interrupted_download_resumes_with_a_range_request(fake, tmp_path):
    fake.cut.add(PART_1)
    folder = _download(fake, tmp_path / "data")
    (_, first), (_, second) = fake.requests_for(PART_1)
    kept = int(re.fullmatch(r"bytes=(\d+)-", second["Range"])[1])
    assert "Range" not in first and 0 < kept <= len(fake.files[PART_1][1]) // 2
    assert len(ham10000.load_dataset(folder)) == len(IMAGE_IDS)  # the resumed zip passed its MD5 and unpacked


def test_a_run_cut_off_for_good_keeps_the_partial_file_for_the_next_run(fake, tmp_path):
    fake.cut.add(SEG)
    with pytest.raises(DataError) as err:
        _download(fake, tmp_path / "data", retries=0)
    assert f"{fake.url}/api/access/datafile/{SEG}" in str(err.value) and "--mirror" in str(err.value)
    part = tmp_path / "data" / ".download" / "HAM10000_segmentations_lesion_tschandl.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < len(fake.files[SEG][1])
    _download(fake, tmp_path / "data")
    assert fake.requests_for(SEG)[-1][1]["Range"] == f"bytes={kept}-"
    assert ham10000.load_dataset(tmp_path / "data")["mask_path"].notna().all()


def test_a_server_ignoring_range_restarts_the_file(fake, tmp_path):
    fake.cut.add(PART_2)
    fake.ranges = False
    folder = _download(fake, tmp_path / "data")
    assert "Range" in fake.requests_for(PART_2)[1][1]
    assert len(ham10000.load_dataset(folder)) == len(IMAGE_IDS)


def test_a_corrupt_download_is_deleted_and_fetched_again(fake, tmp_path):
    fake.corrupt[PART_2] = 1
    folder = _download(fake, tmp_path / "data")
    assert len(fake.requests_for(PART_2)) == 2
    assert len(ham10000.load_dataset(folder)) == len(IMAGE_IDS)


def test_a_file_corrupt_twice_is_reported_with_both_checksums(fake, tmp_path):
    fake.corrupt[PART_2] = 99
    with pytest.raises(DataError) as err:
        _download(fake, tmp_path / "data")
    good = hashlib.md5(fake.files[PART_2][1]).hexdigest()
    body = fake.files[PART_2][1]
    bad = hashlib.md5(body[:-20] + bytes(b ^ 0xFF for b in body[-20:])).hexdigest()
    message = str(err.value)
    assert "HAM10000_images_part_2.zip" in message and f"md5:{good}" in message and f"md5:{bad}" in message
    assert len(fake.requests_for(PART_2)) == 2
    assert not list((tmp_path / "data" / ".download").glob("HAM10000_images_part_2.zip*"))
    assert not (tmp_path / "data" / "HAM10000_images_part_2").exists()


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ISIC_0000000.jpg", _image(0, "JPEG"))
        link = zipfile.ZipInfo("evil.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../evil.jpg")
    return buffer.getvalue()


@pytest.mark.parametrize("member, archive", [
    ("../evil.jpg", None),
    ("HAM10000_images_part_1/../../evil.jpg", None),
    ("/tmp/lesionscan-evil.jpg", None),
    ("evil.jpg", _symlink_zip()),
])
def test_an_archive_escaping_the_data_dir_is_refused_before_writing(fake, tmp_path, member, archive):
    fake.files[PART_1] = ("HAM10000_images_part_1.zip", archive or _zip({"ISIC_0000000.jpg": b"x", member: b"evil"}))
    folder = tmp_path / "data"
    with pytest.raises(DataError, match=re.escape(repr(member))):
        _download(fake, folder)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert sorted(p.name for p in folder.iterdir()) == [".download"]  # nothing unpacked, no temporary left
    assert not (tmp_path.parent / "evil.jpg").exists() and not Path(member).exists()


def test_extract_drops_one_top_folder_and_replaces_an_old_copy(tmp_path):
    flat, nested = tmp_path / "flat.zip", tmp_path / "nested.zip"
    flat.write_bytes(_zip({"a_segmentation.png": b"1", "b_segmentation.png": b"2"}))
    nested.write_bytes(_zip({"top/a_segmentation.png": b"3", "top/": b""}))
    target = tmp_path / "masks"
    assert download.extract(flat, target) == 2
    assert download.extract(nested, target) == 1
    assert sorted(p.name for p in target.iterdir()) == ["a_segmentation.png"]
    assert (target / "a_segmentation.png").read_bytes() == b"3"


def test_the_fake_server_refuses_python_s_default_user_agent(fake):
    assert requests.get(f"{fake.url}/api/access/datafile/{META}", timeout=5).status_code == 403


def test_a_listing_contradicting_a_published_checksum_is_not_trusted(fake, tmp_path):
    fake.files[3838943] = fake.files.pop(SEG)
    with pytest.raises(DataError, match="6e8d252e09cfdb0189199f15985a5b84"):
        _download(fake, tmp_path / "data")
    assert not fake.requests_for(3838943)


def test_a_listing_without_a_needed_file_names_it(fake, tmp_path):
    del fake.files[SEG]
    with pytest.raises(DataError, match="HAM10000_segmentations_lesion_tschandl.zip"):
        _download(fake, tmp_path / "data")


def test_an_unreachable_server_names_the_url_and_suggests_a_mirror(tmp_path):
    with pytest.raises(DataError, match=r"http://127\.0\.0\.1:9/api/datasets.*--mirror"):
        download.download(tmp_path / "data", mirror="http://127.0.0.1:9", progress=False)
    assert not (tmp_path / "data").exists()


def test_cli_download_then_check(fake, tmp_path, capsys):
    folder = tmp_path / "data"
    assert cli.main(["data", "download", str(folder), "--mirror", fake.url]) == 0
    assert cli.main(["data", "check", str(folder)]) == 0
    capsys.readouterr()
    assert cli.main(["data", "download", str(folder), "--mirror", "http://127.0.0.1:9"]) == 2
    assert "--mirror" in capsys.readouterr().err
