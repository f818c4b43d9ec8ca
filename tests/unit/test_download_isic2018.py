"""`data download --isic2018 test|validation` against a fake of the challenge's bucket on 127.0.0.1.

The fake serves the two archives of a set under /2018/ as S3 does: HEAD with
Content-Length and an ETag (the MD5 of the file, or a multipart ETag that is
none), GET with Range requests. It can be told to stop a response midway, to
announce the wrong size, or to serve other bytes than its ETag describes. The
archives are tiny synthetic copies of the official ones (a few JPEGs written
with Pillow, a one-hot ground truth), so the expected image count is passed in.
Nothing here touches the internet.
"""

import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from lesionscan import cli
from lesionscan.core.errors import DataError
from lesionscan.data import download, isic2018

IMAGE_IDS = [f"ISIC_00{34524 + i}" for i in range(5)]
DX = ["nv", "mel", "bkl", "bcc", "vasc"]
INPUT, TRUTH = "ISIC2018_Task3_Test_Input", "ISIC2018_Task3_Test_GroundTruth"


def _jpeg(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (50 * i % 256, 90, 120)).save(buffer, "JPEG")
    return buffer.getvalue()


def _zip(members: dict) -> bytes:
    """A stored (uncompressed) zip, so a test can find a member's bytes in it and damage them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2018, 6, 1, 0, 0, 0)), content)  # same bytes each time
    return buffer.getvalue()


def _truth_csv(rows=None) -> str:
    lines = [",".join(isic2018.HEADER)]
    lines += rows if rows is not None else [
        ",".join([image_id] + ["1.0" if dx == code else "0.0" for code in isic2018.COLUMNS.values()])
        for image_id, dx in zip(IMAGE_IDS, DX)]
    return "\n".join(lines) + "\n"


def _archives(word="Test", rows=None) -> dict:
    """Archive name -> bytes, packed as the official ones are: one top folder, with the licence files."""
    images, truth = f"ISIC2018_Task3_{word}_Input", f"ISIC2018_Task3_{word}_GroundTruth"
    notes = {"ATTRIBUTION.txt": b"attribution", "LICENSE.txt": b"CC-BY-NC"}
    return {
        f"{images}.zip": _zip({f"{images}/": b"", **{f"{images}/{n}": b for n, b in notes.items()},
                               **{f"{images}/{image_id}.jpg": _jpeg(i) for i, image_id in enumerate(IMAGE_IDS)}}),
        f"{truth}.zip": _zip({f"{truth}/{truth}.csv": _truth_csv(rows).encode(),
                              **{f"{truth}/{n}": b for n, b in notes.items()}}),
    }


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


class FakeBucket:
    """The bucket's /2018/ folder. ``etag``, ``announce`` and ``serve`` override, per archive, the ETag and size
    HEAD gives and the bytes GET sends; ``cut`` makes the next GET of an archive stop halfway."""

    def __init__(self, files: dict):
        self.files = files
        self.etag, self.announce, self.serve = {}, {}, {}
        self.cut = set()
        self.log = []  # (method, name, headers) of every request
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _name(self):
                match = re.fullmatch(r"/2018/([^/]+)", self.path)
                name = match and match[1]
                fake.log.append((self.command, name, dict(self.headers)))
                if name not in fake.files:
                    self.send_error(403, "Forbidden")  # what S3 answers for a missing key
                    return None
                return name

            def do_HEAD(self):
                name = self._name()
                if name:
                    self._head(200, fake.announce.get(name, len(fake.files[name])), name)
                    self.end_headers()

            def do_GET(self):
                name = self._name()
                if not name:
                    return
                body = fake.serve.get(name, fake.files[name])
                start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
                if start >= len(body) > 0:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._head(206 if start else 200, len(body) - start, name)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                rest = body[start:]
                self.wfile.write(rest[: len(rest) // 2] if name in fake.cut else rest)
                fake.cut.discard(name)

            def _head(self, code, length, name):
                self.send_response(code)
                self.send_header("Content-Length", str(length))
                self.send_header("ETag", f'"{fake.etag.get(name, _md5(fake.files[name]))}"')
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/2018"

    def gets(self, name):
        return [headers for method, n, headers in self.log if method == "GET" and n == name]


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT", 0)
    monkeypatch.setattr(download, "CHUNK", 256)  # the archives are a few kB; keep most of a cut-off one
    fake = FakeBucket(_archives())
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _download(bucket, folder, part="test", **kwargs):
    kwargs = {"progress": False, "expected_images": len(IMAGE_IDS)} | kwargs
    return download.download_isic2018(folder, part, mirror=bucket.url, **kwargs)


def _assert_nothing_in_place(folder):
    """Only the download state is left in ``folder``: no image or ground-truth folder, nothing half-unpacked."""
    assert [p.name for p in folder.iterdir()] == [".download"]
    assert not (folder / ".download" / download.STAGING_DIR).exists()
    assert not list((folder / ".download").glob("*.done"))


def test_the_archive_names_are_the_official_ones():
    assert download.isic2018_archives("test") == {f"{INPUT}.zip": INPUT, f"{TRUTH}.zip": TRUTH}
    assert download.isic2018_archives("validation") == {
        "ISIC2018_Task3_Validation_Input.zip": "ISIC2018_Task3_Validation_Input",
        "ISIC2018_Task3_Validation_GroundTruth.zip": "ISIC2018_Task3_Validation_GroundTruth"}
    assert (download.ISIC2018_TEST_IMAGES, download.ISIC2018_VALIDATION_IMAGES) == (1512, 193)
    with pytest.raises(DataError, match="'training'.*test, validation"):
        download.isic2018_archives("training")


@pytest.mark.parametrize("part, word", [("test", "Test"), ("validation", "Validation")])
def test_a_full_download_gives_a_folder_check_report_accepts(bucket, tmp_path, part, word):
    bucket.files = _archives(word)
    folder = tmp_path / "isic"
    report = _download(bucket, folder, part)
    again = isic2018.check_report(folder)
    assert report.problems == again.problems == []
    assert dict(zip(again.frame["image_id"], again.frame["dx"])) == dict(zip(IMAGE_IDS, DX))
    images, truth = f"ISIC2018_Task3_{word}_Input", f"ISIC2018_Task3_{word}_GroundTruth"
    assert sorted(p.name for p in (folder / images).iterdir()) == sorted(
        [f"{i}.jpg" for i in IMAGE_IDS] + ["ATTRIBUTION.txt", "LICENSE.txt"])  # the top folder was not doubled
    assert again.ground_truth == (folder / truth / f"{truth}.csv").resolve()
    assert sorted(p.name for p in (folder / ".download").iterdir()) == sorted(
        [f"{images}.zip.done", f"{truth}.zip.done"])
    assert [(method, name) for method, name, _ in bucket.log] == [
        ("HEAD", f"{images}.zip"), ("HEAD", f"{truth}.zip"), ("GET", f"{images}.zip"), ("GET", f"{truth}.zip")]


def test_the_published_count_is_required_by_default(bucket, tmp_path):
    with pytest.raises(DataError) as err:
        download.download_isic2018(tmp_path / "isic", "test", mirror=bucket.url, progress=False)
    assert f"{len(IMAGE_IDS)} labelled images" in str(err.value) and "has 1,512" in str(err.value)
    _assert_nothing_in_place(tmp_path / "isic")


def test_an_interrupted_download_resumes_with_a_range_request(bucket, tmp_path):
    bucket.cut.add(f"{INPUT}.zip")
    folder = tmp_path / "isic"
    _download(bucket, folder)
    first, second = bucket.gets(f"{INPUT}.zip")
    kept = int(re.fullmatch(r"bytes=(\d+)-", second["Range"])[1])
    assert "Range" not in first and 0 < kept <= len(bucket.files[f"{INPUT}.zip"]) // 2
    assert len(isic2018.check_report(folder).frame) == len(IMAGE_IDS)  # the resumed zip passed its MD5 and unpacked


def test_a_run_cut_off_for_good_resumes_on_the_next_run(bucket, tmp_path):
    bucket.cut.add(f"{TRUTH}.zip")
    folder = tmp_path / "isic"
    with pytest.raises(DataError, match=re.escape(f"{bucket.url}/{TRUTH}.zip") + ".*--mirror"):
        _download(bucket, folder, retries=0)
    part = folder / ".download" / f"{TRUTH}.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < len(bucket.files[f"{TRUTH}.zip"])
    assert not (folder / INPUT).exists()  # a set goes into place whole, or not at all
    _download(bucket, folder)
    assert bucket.gets(f"{TRUTH}.zip")[-1]["Range"] == f"bytes={kept}-"
    assert isic2018.check_report(folder).problems == []


def test_a_size_other_than_the_announced_one_is_refused_naming_the_file(bucket, tmp_path):
    name = f"{INPUT}.zip"
    bucket.announce[name] = len(bucket.files[name]) + 10
    folder = tmp_path / "isic"
    with pytest.raises(DataError) as err:
        _download(bucket, folder)
    message = str(err.value)
    assert name in message and f"{len(bucket.files[name]):,} bytes" in message
    assert f"lists {len(bucket.files[name]) + 10:,} bytes" in message
    assert len(bucket.gets(name)) == 1  # refused, not retried
    _assert_nothing_in_place(folder)
    assert not list((folder / ".download").glob(f"{name}*"))  # no partial file either


def test_bytes_other_than_the_etag_s_md5_are_refused_naming_the_file(bucket, tmp_path):
    name = f"{TRUTH}.zip"
    body = bucket.files[name]
    bucket.serve[name] = bad = body[:-20] + bytes(b ^ 0xFF for b in body[-20:])
    folder = tmp_path / "isic"
    with pytest.raises(DataError) as err:
        _download(bucket, folder)
    message = str(err.value)
    assert name in message and f"md5:{_md5(body)}" in message and f"md5:{_md5(bad)}" in message
    assert len(bucket.gets(name)) == 2  # deleted and fetched once more before giving up
    _assert_nothing_in_place(folder)
    assert not list((folder / ".download").glob(f"{name}*"))


@pytest.mark.parametrize("etag", ["md5", "multipart"])
def test_a_corrupt_zip_is_refused_naming_it(bucket, tmp_path, etag):
    """The server's own copy is damaged (a flipped byte inside an image): its MD5 is right, its CRC is not."""
    name = f"{INPUT}.zip"
    body = bytearray(bucket.files[name])
    at = bytes(body).find(_jpeg(2)) + len(_jpeg(2)) // 2
    body[at] ^= 0xFF
    bucket.files[name] = bytes(body)
    if etag == "multipart":
        bucket.etag[name] = f"{_md5(bytes(body))}-3"
    folder = tmp_path / "isic"
    with pytest.raises(DataError) as err:
        _download(bucket, folder)
    message = str(err.value)
    assert name in message and "not a readable zip archive" in message and "CRC" in message
    assert f"{IMAGE_IDS[2]}.jpg" in message
    _assert_nothing_in_place(folder)
    # an archive nothing vouched for is deleted, so the next run fetches it again
    assert (folder / ".download" / name).exists() == (etag == "md5")


def test_a_ground_truth_with_a_bad_row_is_refused_naming_file_and_line(bucket, tmp_path):
    rows = _truth_csv().splitlines()[1:]
    rows[2] = f"{IMAGE_IDS[2]},1.0,1.0,0.0,0.0,0.0,0.0,0.0"  # two classes, on line 4 (after the header)
    bucket.files = _archives(rows=rows)
    folder = tmp_path / "isic"
    with pytest.raises(DataError) as err:
        _download(bucket, folder)
    message = str(err.value)
    assert f"{TRUTH}.csv line 4: {IMAGE_IDS[2]} is not exactly one-hot" in message
    assert "nothing was put in" in message and str(folder) in message
    _assert_nothing_in_place(folder)


def test_a_second_run_downloads_nothing(bucket, tmp_path, capsys):
    folder = tmp_path / "isic"
    _download(bucket, folder)
    image = folder / INPUT / f"{IMAGE_IDS[0]}.jpg"
    before, stamp = len(bucket.log), image.stat().st_mtime_ns
    capsys.readouterr()
    _download(bucket, folder, progress=True)
    assert [method for method, _, _ in bucket.log[before:]] == ["HEAD", "HEAD"]
    assert image.stat().st_mtime_ns == stamp
    err = capsys.readouterr().err
    assert f"{INPUT}.zip: already unpacked in {INPUT}/" in err and f"{TRUTH}.zip: already unpacked" in err


def test_a_changed_archive_is_fetched_again(bucket, tmp_path):
    folder = tmp_path / "isic"
    _download(bucket, folder)
    bucket.files = _archives(rows=_truth_csv().splitlines()[1:][::-1])  # same labels, new bytes, new ETag
    before = len(bucket.log)
    _download(bucket, folder)
    assert sorted(name for method, name, _ in bucket.log[before:] if method == "GET") == sorted(
        [f"{INPUT}.zip", f"{TRUTH}.zip"])  # a set is unpacked whole (the image archive was deleted): both again
    assert isic2018.check_report(folder).problems == []


def test_a_multipart_etag_is_said_to_be_no_md5_and_the_download_goes_on(bucket, tmp_path, capsys):
    name = f"{INPUT}.zip"
    bucket.etag[name] = "9b2cf535f27731c974343645a3985328-12"
    report = _download(bucket, tmp_path / "isic", progress=True)
    assert report.problems == [] and len(report.frame) == len(IMAGE_IDS)
    err = capsys.readouterr().err
    size = len(bucket.files[name])
    assert f"{name}: {size:,} bytes; the server's ETag (\"{bucket.etag[name]}\") is not an MD5" in err
    assert f"{TRUTH}.zip: {len(bucket.files[f'{TRUTH}.zip']):,} bytes; checked against the MD5" in err


def test_a_folder_holding_the_other_set_is_refused(bucket, tmp_path):
    folder = tmp_path / "isic"
    _download(bucket, folder)
    bucket.files = _archives("Validation")
    before = len(bucket.log)
    with pytest.raises(DataError, match=re.escape(f"{TRUTH}/{TRUTH}.csv") + ".*validation set in a folder of its own"):
        _download(bucket, folder, "validation")
    assert len(bucket.log) == before


def test_a_missing_archive_names_its_url(bucket, tmp_path):
    del bucket.files[f"{TRUTH}.zip"]
    with pytest.raises(DataError, match=re.escape(f"{bucket.url}/{TRUTH}.zip") + ": HTTP 403"):
        _download(bucket, tmp_path / "isic")
    assert not (tmp_path / "isic").exists()


def test_cli_download_isic2018_then_check(bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(download.ISIC2018_PARTS, "test", ("Test", len(IMAGE_IDS)))  # not 1,512 synthetic images
    folder = tmp_path / "isic"
    assert cli.main(["data", "download", "--isic2018", "test", str(folder), "--mirror", bucket.url]) == 0
    out = capsys.readouterr().out
    assert str(folder.resolve()) in out and f"`lesionscan data check {folder.resolve()}`" in out
    assert f"`lesionscan evaluate --model M --data {folder.resolve()}`" in out
    assert cli.main(["data", "check", str(folder)]) == 0
    assert "layout:   ISIC 2018 Task 3" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "download", "--isic2018", "training", str(folder)])
    assert exit_.value.code == 2 and "--isic2018: invalid choice: 'training'" in capsys.readouterr().err
