"""Downloads against a local HTTP server (127.0.0.1, Range support, dropped connections); no internet."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hstu_blair.data import download as dl
from hstu_blair.data import fetch
from hstu_blair.data.remote_files import (
    RECORD_FILE,
    ChecksumMismatchError,
    DownloadError,
    DownloadUnavailableError,
    RemoteFile,
    UnknownDownloadError,
)
from hstu_blair.errors import HstuBlairError

CONTENT = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(CONTENT).hexdigest()


@dataclass
class Server:
    """What the test server serves and what it was asked."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    ignore_range: bool = False
    drops: int = 0  # the next `drops` responses stop half way and close the connection


def make_handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, range_header = self.path.lstrip("/"), self.headers.get("Range")
            state.requests.append((path, range_header))
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if state.drops > 0:
                state.drops -= 1
                payload = payload[: len(payload) // 2]  # HTTP/1.0: the connection closes after this
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(fetch, "_RETRY_WAIT_S", 0.0)
    monkeypatch.delenv(dl.BASE_URL_ENV, raising=False)
    state = Server(files={"sub/dir/a.bin": CONTENT})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield state
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def remote(
    path: str = "sub/dir/a.bin", sha256: str | None = SHA, size: int | None = len(CONTENT)
) -> RemoteFile:
    return RemoteFile(path, "http://official.invalid/base/", sha256, size)


def test_download_verifies_renames_and_records(server: Server, tmp_path: Path) -> None:
    paths = dl.download_files([remote()], tmp_path / "dest", base_url=server.url, progress=False)
    assert paths == [tmp_path / "dest" / "a.bin"]
    assert paths[0].read_bytes() == CONTENT
    assert not (tmp_path / "dest" / "a.bin.part").exists()
    assert server.requests == [("sub/dir/a.bin", None)]
    record = json.loads((tmp_path / "dest" / RECORD_FILE).read_text())["files"]["a.bin"]
    assert record["sha256"] == SHA and record["bytes"] == len(CONTENT)
    assert record["url"] == server.url + "sub/dir/a.bin"


def test_record_file_is_skipped_by_loaders_scanning_the_folder() -> None:
    # the Amazon loader reads every *.json / *.jsonl / *.csv(.gz) in a folder it is given
    assert not RECORD_FILE.lower().endswith((".json", ".jsonl", ".csv", ".tsv", ".gz", ".parquet", ".dat"))


def test_verified_file_is_not_downloaded_again(server: Server, tmp_path: Path) -> None:
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert dl.download_files([remote()], tmp_path, base_url=server.url, progress=False) == [
        tmp_path / "a.bin"
    ]
    assert len(server.requests) == 1


def test_present_file_with_other_content_is_replaced(server: Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(len(CONTENT)))  # right size, wrong bytes
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == CONTENT
    assert len(server.requests) == 1


def test_file_placed_by_hand_is_verified_without_download(server: Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(CONTENT)
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert server.requests == []
    assert json.loads((tmp_path / RECORD_FILE).read_text())["files"]["a.bin"]["sha256"] == SHA


def test_partial_file_is_resumed_with_range(server: Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin.part").write_bytes(CONTENT[:100_000])
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("sub/dir/a.bin", "bytes=100000-")]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT
    assert not (tmp_path / "a.bin.part").exists()


def test_corrupt_partial_file_is_downloaded_again_from_the_start(server: Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin.part").write_bytes(bytes(100_000))  # not a prefix of the file
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("sub/dir/a.bin", "bytes=100000-"), ("sub/dir/a.bin", None)]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"stale bytes of an older attempt")
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("sub/dir/a.bin", "bytes=31-")]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT  # the stale prefix is gone, nothing doubled


def test_dropped_connection_is_resumed_in_the_same_call(server: Server, tmp_path: Path) -> None:
    server.drops = 1
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    half = len(CONTENT) // 2
    assert server.requests == [("sub/dir/a.bin", None), ("sub/dir/a.bin", f"bytes={half}-")]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT


def test_dropped_connection_keeps_the_part_for_the_next_call(server: Server, tmp_path: Path) -> None:
    server.drops = 1
    with pytest.raises(DownloadError, match=r"a\.bin\.part is kept") as info:
        dl.download_files([remote()], tmp_path, base_url=server.url, progress=False, retries=0)
    assert "150,000 bytes" in str(info.value)
    assert (tmp_path / "a.bin.part").read_bytes() == CONTENT[:150_000]
    assert not (tmp_path / "a.bin").exists()

    dl.download_files([remote()], tmp_path, base_url=server.url, progress=False)
    assert server.requests[-1] == ("sub/dir/a.bin", "bytes=150000-")
    assert (tmp_path / "a.bin").read_bytes() == CONTENT


def test_checksum_mismatch_names_file_and_both_sums_and_keeps_nothing(server: Server, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(ChecksumMismatchError) as info:
        dl.download_files([remote(sha256=wrong)], tmp_path, base_url=server.url, progress=False)
    message = str(info.value)
    assert "a.bin" in message and server.url + "sub/dir/a.bin" in message
    assert f"expected 300,000 bytes, sha256 {wrong}" in message
    assert f"got 300,000 bytes, sha256 {SHA}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_size_mismatch_is_reported_before_the_transfer(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ChecksumMismatchError, match="has 300,000 bytes, expected 300,001"):
        dl.download_files([remote(size=len(CONTENT) + 1)], tmp_path, base_url=server.url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_without_published_sum_the_computed_sha256_is_recorded(server: Server, tmp_path: Path) -> None:
    dl.download_files([remote(sha256=None, size=None)], tmp_path, base_url=server.url, progress=False)
    record = json.loads((tmp_path / RECORD_FILE).read_text())["files"]["a.bin"]
    assert record["sha256"] == SHA and record["checked_against"].startswith("nothing")


def test_complete_part_of_unknown_size_is_finished_after_416(server: Server, tmp_path: Path) -> None:
    (tmp_path / "a.bin.part").write_bytes(CONTENT)
    dl.download_files([remote(sha256=None, size=None)], tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("sub/dir/a.bin", "bytes=300000-")]
    assert (tmp_path / "a.bin").read_bytes() == CONTENT


def test_http_404_is_a_download_error_naming_the_url(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="missing.bin failed: HTTP 404") as info:
        dl.download_files([remote("missing.bin")], tmp_path, base_url=server.url, progress=False)
    assert not isinstance(info.value, DownloadUnavailableError)


def test_offline_error_says_what_to_fetch_from_where_and_where_to_put_it(tmp_path: Path) -> None:
    url = closed_port_url()
    files = [remote(), remote("other/b.csv", sha256=None, size=None)]
    with pytest.raises(DownloadUnavailableError) as info:
        dl.download_files(files, tmp_path, base_url=url, progress=False)
    assert isinstance(info.value, HstuBlairError)
    message = str(info.value)
    assert f"{url}sub/dir/a.bin -> {tmp_path / 'a.bin'} (300,000 bytes, sha256 {SHA})" in message
    assert f"{url}other/b.csv -> {tmp_path / 'b.csv'}" in message
    assert "hstu-blair prepare" in message
    assert list(tmp_path.iterdir()) == []  # no empty .part left behind


def test_offline_error_for_a_named_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dl.BASE_URL_ENV, closed_port_url())
    with pytest.raises(DownloadUnavailableError) as info:
        dl.download("amazon2023:Video_Games", tmp_path, progress=False)
    message = str(info.value)
    assert "benchmark/5core/rating_only/Video_Games.csv -> " + str(tmp_path / "Video_Games.csv") in message
    assert "47,244,051 bytes" in message
    assert (
        "raw/meta_categories/meta_Video_Games.jsonl -> " + str(tmp_path / "meta_Video_Games.jsonl") in message
    )


def test_named_download_reads_the_mirror_from_the_environment(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files = {"steam_reviews.json.gz": b"reviews", "steam_games.json.gz": b"games"}
    monkeypatch.setenv(dl.BASE_URL_ENV, server.url)
    paths = dl.download("steam", tmp_path, progress=False)
    assert paths == [tmp_path / "steam_reviews.json.gz", tmp_path / "steam_games.json.gz"]
    assert [p.read_bytes() for p in paths] == [b"reviews", b"games"]
    records = json.loads((tmp_path / RECORD_FILE).read_text())["files"]
    assert records["steam_games.json.gz"]["sha256"] == hashlib.sha256(b"games").hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_zip_archive_is_unpacked_once(server: Server, tmp_path: Path) -> None:
    server.files = {"ml-tiny.zip": make_zip({"ml-tiny/ratings.csv": b"userId\n1\n", "ml-tiny/README": b"x"})}
    archive = RemoteFile("ml-tiny.zip", "http://official.invalid/", extract=True)
    assert dl.download_files([archive], tmp_path, base_url=server.url, progress=False) == [
        tmp_path / "ml-tiny"
    ]
    assert (tmp_path / "ml-tiny" / "ratings.csv").read_bytes() == b"userId\n1\n"
    assert dl.download_files([archive], tmp_path, base_url=server.url, progress=False) == [
        tmp_path / "ml-tiny"
    ]
    assert len(server.requests) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_FILE, "ml-tiny", "ml-tiny.zip"]


def test_folder_unpacked_by_hand_is_accepted(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ml-tiny").mkdir()
    archive = RemoteFile("ml-tiny.zip", "http://official.invalid/", extract=True)
    assert dl.download_files([archive], tmp_path, base_url=server.url, progress=False) == [
        tmp_path / "ml-tiny"
    ]
    assert server.requests == []


def test_zip_member_outside_the_folder_is_refused(server: Server, tmp_path: Path) -> None:
    server.files = {"evil.zip": make_zip({"../evil.txt": b"x"})}
    archive = RemoteFile("evil.zip", "http://official.invalid/", extract=True)
    with pytest.raises(DownloadError, match="outside the folder"):
        dl.download_files([archive], tmp_path / "dest", base_url=server.url, progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_invalid_zip_is_removed_with_its_record(server: Server, tmp_path: Path) -> None:
    server.files = {"ml-tiny.zip": b"<html>not found</html>"}
    archive = RemoteFile("ml-tiny.zip", "http://official.invalid/", extract=True)
    with pytest.raises(DownloadError, match="ml-tiny.zip is not a valid zip archive"):
        dl.download_files([archive], tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / "ml-tiny.zip").exists()
    assert json.loads((tmp_path / RECORD_FILE).read_text())["files"] == {}


def test_progress_bar_shows_rate(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dl.download_files([remote()], tmp_path, base_url=server.url, progress=True)
    err = capsys.readouterr().err
    assert "a.bin" in err and "B/s" in err


def test_unknown_name_lists_the_valid_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownDownloadError) as info:
        dl.download("amazon2023:Video_Game", tmp_path)
    message = str(info.value)
    for name in ("steam", "ml-1m", "ml-20m", "ml-latest-small", "Video_Games", "Office_Products"):
        assert name in message
    assert not any(tmp_path.iterdir())


def test_catalogue_points_at_the_official_files() -> None:
    video_games = dl.get_download("amazon2023:video_games")  # names are case-insensitive
    assert video_games.source == "amazon2023"
    base = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/"
    assert [f.url() for f in video_games.files] == [
        base + "benchmark/5core/rating_only/Video_Games.csv",
        base + "raw/meta_categories/meta_Video_Games.jsonl",
    ]
    assert video_games.size == 47_244_051 + 437_375_785
    reviews = dl.get_download("amazon2023:Video_Games:reviews").files[0]
    assert reviews.url() == base + "raw/review_categories/Video_Games.jsonl" and reviews.size == 2_682_948_518
    assert [f.url() for f in dl.get_download("steam").files] == [
        "https://cseweb.ucsd.edu/~wckang/steam_reviews.json.gz",
        "https://cseweb.ucsd.edu/~wckang/steam_games.json.gz",
    ]
    ml = dl.get_download("ml-1m").files[0]
    assert ml.url() == "https://files.grouplens.org/datasets/movielens/ml-1m.zip" and ml.extract
    assert ml.url("http://mirror/x/") == "http://mirror/x/ml-1m.zip"
    names = [d.name for d in dl.list_downloads()]
    assert len(names) == 28 + 34 + 1 + 5
    assert {"amazon2023:Office_Products", "amazon2023:Musical_Instruments", "ml-latest"} <= set(names)


def test_shipped_checksums_hold_the_official_list() -> None:
    sums = dl.amazon2023_checksums()
    assert len(sums) == 874
    assert sums["benchmark/5core/rating_only/Video_Games.csv"][1] == 47_244_051
    assert sums["raw/meta_categories/meta_Video_Games.jsonl"] == (
        "3ad94dfaa8dfed23c5f420aa9ddec415d00f2b8ec9f2d796f487b4b2c4d256de",
        437_375_785,
    )
    sha, size = sums["benchmark/5core/rating_only/All_Beauty.csv"]
    assert size == 147_479 and sha.startswith("502c64be") and sha.endswith("afb3a")


REAL_ALL_BEAUTY = Path("/work/shared/datasets/amazon2023-all-beauty-5core/All_Beauty.csv")


@pytest.mark.skipif(
    not REAL_ALL_BEAUTY.exists(), reason="the real All_Beauty 5-core file is not on this machine"
)
def test_real_official_file_verifies_against_the_shipped_sum(server: Server, tmp_path: Path) -> None:
    entry = dl.get_download("amazon2023:All_Beauty").files[0]
    server.files = {entry.path: REAL_ALL_BEAUTY.read_bytes()}
    path = dl.download_files([entry], tmp_path, base_url=server.url, progress=False)[0]
    assert path.read_bytes() == REAL_ALL_BEAUTY.read_bytes()
