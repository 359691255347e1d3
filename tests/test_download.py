"""Downloads (against a local HTTP server on 127.0.0.1), the registry and safe archive extraction."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import re
import socket
import stat
import subprocess
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import pytest

from reconet_lib import archive, download, registry
from reconet_lib.download import DownloadError, Resource, extract, fetch, sha256_file
from reconet_lib.errors import UserInputError

PAYLOAD = bytes(range(256)) * 1000  # 256 kB, several download chunks are not needed: the logic is per request
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
#: The shared real style images' README, beside the repository (never committed); tests skip without it.
STYLES_README = Path(__file__).resolve().parents[1].parent / "shared" / "styles" / "README.md"


# ---------------------------------------------------------------------------------------------
# A small HTTP server with Range support (and switches to misbehave)
# ---------------------------------------------------------------------------------------------

class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {"/data.bin": PAYLOAD}
        self.ignore_range = False
        self.cut_after: int | None = None  # send only this many body bytes, then close
        self.requests: list[dict] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        st = self.state
        body = st.files.get(self.path)
        rng = self.headers.get("Range")
        if body is None:
            st.requests.append({"path": self.path, "range": rng, "status": 404, "sent": 0})
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and not st.ignore_range:
            start = int(m.group(1))
            if start >= len(body):
                st.requests.append({"path": self.path, "range": rng, "status": 416, "sent": 0})
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            status = 206
        else:
            self.send_response(200)
            status = 200
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if st.cut_after is not None:
            chunk = chunk[: st.cut_after]
        self.wfile.write(chunk)
        st.requests.append({"path": self.path, "range": rng, "status": status, "sent": len(chunk)})
        if st.cut_after is not None:
            self.close_connection = True


@pytest.fixture()
def server():
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _res(server, *, sha=PAYLOAD_SHA, size=len(PAYLOAD), path="/data.bin", name="test-data"):
    return Resource(name=name, url=server.base + path, filename="data.bin", size=size, sha256=sha)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.bin"


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)  # these tests download from a local server
    monkeypatch.setenv("RECONET_DATA", str(tmp_path / "data"))


# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------


def test_offline_opt_out_uses_only_the_file_on_disk_and_mirror_folders(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(DownloadError, match="RECONET_OFFLINE=1"):
        fetch(_res(server), tmp_path, progress=False)
    assert server.requests == []
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(PAYLOAD)
    assert fetch(_res(server), tmp_path / "out", mirror=mirror, progress=False).read_bytes() == PAYLOAD
    assert fetch(_res(server), tmp_path / "out", progress=False).read_bytes() == PAYLOAD  # now on disk
    assert server.requests == []
    with pytest.raises(UserInputError, match="RECONET_OFFLINE"):
        monkeypatch.setenv(download.OFFLINE_ENV, "maybe")
        fetch(_res(server), tmp_path / "other", progress=False)


def test_base_url_override_replaces_the_server_part_of_the_url(server, tmp_path, monkeypatch):
    res = download.Resource("x", "https://unreachable.invalid/some/where/data.bin", "data.bin", len(PAYLOAD),
                            PAYLOAD_SHA, url_key="TESTHOST")
    base = server.base
    monkeypatch.setenv(download.BASE_URL_ENV_PREFIX + "TESTHOST", base)
    assert download.source_url(res) == base + "/data.bin"
    assert fetch(res, tmp_path, progress=False).read_bytes() == PAYLOAD
    assert download.source_url(res, "http://other/") == "http://other/data.bin"

def test_fetch_downloads_verifies_and_shows_progress(server, tmp_path, capsys):
    path = fetch(_res(server), tmp_path, progress=True)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert [r["status"] for r in server.requests] == [200]
    err = capsys.readouterr().err
    assert "data.bin" in err and "100%" in err  # tqdm's bar (tqdm.auto falls back to the console bar)


def test_fetch_defaults_to_data_dir_downloads(server, tmp_path):
    path = fetch(_res(server), progress=False)
    assert path == tmp_path / "data" / "downloads" / "data.bin"


def test_fetch_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:100_000])
    path = fetch(_res(server), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    (req,) = server.requests
    assert req["range"] == "bytes=100000-" and req["status"] == 206
    assert req["sent"] == len(PAYLOAD) - 100_000


def test_fetch_restarts_cleanly_when_the_server_ignores_range(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"\xff" * 100_000)  # a stale prefix that must not survive
    path = fetch(_res(server), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    (req,) = server.requests
    assert req["range"] == "bytes=100000-" and req["status"] == 200


def test_fetch_restarts_when_the_range_is_past_the_end(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"\0" * (len(PAYLOAD) + 10))  # longer than the file
    path = fetch(_res(server, size=None), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [r["status"] for r in server.requests] == [416, 200]


def test_fetch_sha_mismatch_raises_and_leaves_no_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"expected {wrong}") as info:
        fetch(_res(server, sha=wrong), tmp_path, progress=False)
    assert PAYLOAD_SHA in str(info.value)  # names what it got
    assert not (tmp_path / "data.bin").exists()
    assert not (tmp_path / "data.bin.part").exists()


def test_fetch_size_mismatch_raises(server, tmp_path):
    with pytest.raises(DownloadError, match=f"size is {len(PAYLOAD)} bytes, expected 5"):
        fetch(_res(server, size=5, sha=None), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_returns_an_existing_good_file_without_network(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    path = fetch(_res(server), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == []
    fetch(_res(server), tmp_path, progress=False)  # second time uses the verification stamp
    assert server.requests == []


def test_fetch_replaces_a_corrupt_existing_file(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"x" * len(PAYLOAD))
    assert fetch(_res(server), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_fetch_changed_file_is_checked_again_despite_the_stamp(server, tmp_path):
    fetch(_res(server), tmp_path, progress=False)
    target = tmp_path / "data.bin"
    target.write_bytes(b"y" * len(PAYLOAD))
    os.utime(target, ns=(1, 1))  # a different mtime: the stamp no longer applies
    assert fetch(_res(server), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_interrupted_download_keeps_the_partial_and_never_the_final_name(server, tmp_path):
    server.cut_after = 50_000
    with pytest.raises(DownloadError, match="resume"):
        fetch(_res(server), tmp_path, progress=False)
    assert not (tmp_path / "data.bin").exists()
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:50_000]
    server.cut_after = None
    assert fetch(_res(server), tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == "bytes=50000-"


def test_interrupted_download_does_not_touch_an_existing_file(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"old")  # wrong content, but whatever is there stays until verified
    server.cut_after = 1000
    with pytest.raises(DownloadError):
        fetch(_res(server), tmp_path, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == b"old"


def test_fetch_from_a_mirror_folder_needs_no_network(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(PAYLOAD)
    res = Resource("test-data", _closed_port_url(), "data.bin", len(PAYLOAD), PAYLOAD_SHA)
    path = fetch(res, tmp_path / "out", mirror=mirror, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_fetch_reads_the_mirror_from_the_environment(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRROR_ENV, str(mirror))
    res = Resource("test-data", _closed_port_url(), "data.bin", len(PAYLOAD), PAYLOAD_SHA)
    assert fetch(res, tmp_path / "out", progress=False).read_bytes() == PAYLOAD


def test_fetch_rejects_a_corrupt_mirror_file(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(PAYLOAD[:-1] + b"\0")
    res = Resource("test-data", _closed_port_url(), "data.bin", len(PAYLOAD), PAYLOAD_SHA)
    with pytest.raises(DownloadError, match="sha256 is"):
        fetch(res, tmp_path / "out", mirror=mirror, progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_fetch_from_a_mirror_url_falls_back_to_the_origin_on_404(server, tmp_path):
    server.files["/mirror/data.bin"] = PAYLOAD
    res = _res(server)
    assert fetch(res, tmp_path, mirror=server.base + "/mirror/", progress=False).read_bytes() == PAYLOAD
    assert [r["path"] for r in server.requests] == ["/mirror/data.bin"]
    (tmp_path / "data.bin").unlink()
    fetch(res, tmp_path, mirror=server.base + "/elsewhere", progress=False)
    assert [r["path"] for r in server.requests][-2:] == ["/elsewhere/data.bin", "/data.bin"]


def test_fetch_offline_gives_one_clear_error(tmp_path):
    res = Resource("test-data", _closed_port_url(), "data.bin", len(PAYLOAD), PAYLOAD_SHA)
    with pytest.raises(DownloadError) as info:
        fetch(res, tmp_path, progress=False)
    msg = str(info.value)
    assert "offline" in msg
    assert str(tmp_path / "data.bin") in msg and PAYLOAD_SHA in msg and download.MIRROR_ENV in msg


def test_fetch_http_error_names_the_status(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(_res(server, path="/missing.bin"), tmp_path, progress=False)


def test_sha256_file_matches_hashlib(tmp_path):
    (tmp_path / "f").write_bytes(PAYLOAD)
    assert sha256_file(tmp_path / "f") == PAYLOAD_SHA


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def test_registry_entries_have_url_filename_and_explain_unknowns():
    assert {"mpi_sintel", "flyingchairs2", "monkaa_frames_finalpass", "monkaa_optical_flow",
            "monkaa_motion_boundaries", "flyingthings3d_frames_finalpass", "flyingthings3d_optical_flow",
            "flyingthings3d_motion_boundaries"} <= set(download.REGISTRY)
    for name, res in download.REGISTRY.items():
        assert res.name == name
        assert res.url.startswith(("http://", "https://")) and res.filename
        assert res.url.endswith(res.filename)
        if res.size is None or res.sha256 is None:
            assert res.note, f"{name}: unknown size/sha256 must be explained in note"


def test_style_entries_match_the_fixture_readme():
    if not STYLES_README.exists():
        pytest.skip("the shared style fixtures are not on this machine")
    rows = re.findall(r"^\| (\w+\.jpg) \| ([0-9a-f]{64}) \| [^|]+ \| (\S+) \|$", STYLES_README.read_text(), re.M)
    assert len(rows) == 5
    for filename, sha, url in rows:
        res = download.resource("style_" + filename[:-4])
        assert (res.filename, res.sha256, res.url) == (filename, sha, url)
        fixture = STYLES_README.parent / filename
        assert res.size == fixture.stat().st_size
        assert sha256_file(fixture) == sha


def test_unknown_resource_lists_the_known_names():
    with pytest.raises(UserInputError, match="mpi_sintel"):
        download.resource("no-such-thing")


def test_register_adds_and_protects_names(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", registry.builtin_resources())
    mine = Resource("my-clip", "https://example.org/clip.mp4", "clip.mp4", None, None, "my own clip")
    download.register(mine)
    assert download.resource("my-clip") is mine
    download.register(mine)  # same again: fine
    other = Resource("my-clip", "https://example.org/other.mp4", "other.mp4", None, None)
    with pytest.raises(UserInputError, match="replace=True"):
        download.register(other)
    download.register(other, replace=True)
    assert download.resource("my-clip") is other
    with pytest.raises(UserInputError, match="bare file name"):
        download.register(Resource("bad", "https://example.org/x", "../x", None, None))


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

def _zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] = {}) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_extract_unpacks_and_marks_completion(tmp_path, make):
    archive = make(tmp_path / "a.archive", {"top/a.txt": b"A", "top/sub/b.txt": b"B"}, {"top/link": "sub/b.txt"})
    out = extract(archive, tmp_path / "out")
    assert (out / "top/a.txt").read_bytes() == b"A"
    assert (out / "top/link").read_bytes() == b"B" and (out / "top/link").is_symlink()
    assert list(out.glob(".extracted-*.json"))
    (out / "top/a.txt").write_bytes(b"changed")
    extract(archive, out)  # complete already: not redone
    assert (out / "top/a.txt").read_bytes() == b"changed"
    assert not [p for p in tmp_path.iterdir() if ".extracting.partial-" in p.name]


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_interrupted_extraction_is_redone(tmp_path, make):
    archive = make(tmp_path / "a.archive", {"top/a.txt": b"A", "top/b.txt": b"B"})
    out = tmp_path / "out"
    (out / "top").mkdir(parents=True)
    (out / "top/a.txt").write_bytes(b"half-written")  # as if a previous run died: no stamp
    extract(archive, out)
    assert (out / "top/a.txt").read_bytes() == b"A" and (out / "top/b.txt").read_bytes() == b"B"


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_extract_members_selects_a_folder(tmp_path, make):
    archive = make(tmp_path / "a.archive", {"training/flow/f.flo": b"F", "test/x.png": b"X"})
    out = extract(archive, tmp_path / "out", members=["training/flow"])
    assert (out / "training/flow/f.flo").exists() and not (out / "test").exists()
    with pytest.raises(UserInputError, match="no member"):
        extract(archive, tmp_path / "out2", members=["nope"])


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
@pytest.mark.parametrize(
    "entries, symlinks, why",
    [
        ({"ok.txt": b"fine", "../evil.txt": b"x"}, {}, "'..'"),
        ({"ok.txt": b"fine", "a/../../evil.txt": b"x"}, {}, "'..'"),
        ({"ok.txt": b"fine", "/tmp/evil.txt": b"x"}, {}, "absolute"),
        ({"ok.txt": b"fine"}, {"escape": "../../outside"}, "outside"),
        ({"ok.txt": b"fine"}, {"escape": "/etc/passwd"}, "absolute"),
        ({"ok.txt": b"fine", "dirlink/evil.txt": b"x"}, {"dirlink": "."}, "through the link"),
        ({"ok.txt": b"fine"}, {"a/l": "..", "hop": "a/l/.."}, "outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "write-through-link",
         "link-chain"],
)
def test_extract_refuses_members_that_leave_the_target(tmp_path, make, entries, symlinks, why):
    archive = make(tmp_path / "bad.archive", entries, symlinks)
    out = tmp_path / "deep" / "out"
    with pytest.raises(UserInputError, match=re.escape(why)):
        extract(archive, out)
    assert not out.exists()  # nothing at all was written, not even the harmless member
    assert not (tmp_path / "deep").exists()  # not even the temporary folder next to the target
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_several_archives_into_one_folder_cannot_combine_links_to_escape(tmp_path, make):
    # Each archive is harmless alone: d/q -> .. stays inside; d/p -> q/.. stays inside in its own archive;
    # d/p/ESCAPED.txt is a plain file. Together, d/p would lead to the target's parent.
    out = tmp_path / "parent" / "out"
    extract(make(tmp_path / "one.archive", {"d/keep.txt": b"K"}, {"d/q": ".."}), out)
    assert (out / "d/q").is_symlink()
    with pytest.raises(UserInputError, match="reach outside") as info:
        extract(make(tmp_path / "two.archive", {"x.txt": b"x"}, {"d/p": "q/.."}), out)
    assert "d/p" in str(info.value) and "\n" not in str(info.value)
    assert not os.path.lexists(out / "d/p") and not (out / "x.txt").exists()  # nothing of it was merged
    with pytest.raises(UserInputError):  # and had the link been planted by hand, the file would be refused
        os.symlink("q/..", out / "d/p")
        extract(make(tmp_path / "three.archive", {"d/p/ESCAPED.txt": b"E"}), out)
    assert not (tmp_path / "parent" / "ESCAPED.txt").exists() and not (tmp_path / "ESCAPED.txt").exists()
    assert (out / "d/keep.txt").read_bytes() == b"K"  # what was there is intact
    assert not [p for p in (tmp_path / "parent").iterdir() if ".extracting.partial-" in p.name]


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_several_archives_merge_when_their_links_stay_inside(tmp_path, make):
    out = tmp_path / "out"
    extract(make(tmp_path / "one.archive", {"data/clean/a.png": b"A"}, {"latest": "data"}), out)
    extract(make(tmp_path / "two.archive", {"latest/flow/a.flo": b"F", "data/clean/b.png": b"B"}), out)
    assert (out / "data/flow/a.flo").read_bytes() == b"F"  # written through the inside link, as the user expects
    assert (out / "data/clean/a.png").read_bytes() == b"A" and (out / "data/clean/b.png").read_bytes() == b"B"


def test_extract_refuses_a_tar_device_file(tmp_path):
    archive = tmp_path / "dev.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("null")
        info.type = tarfile.CHRTYPE
        tf.addfile(info)
    with pytest.raises(UserInputError, match="special files"):
        extract(archive, tmp_path / "out")


def test_extract_rejects_a_non_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not an archive")
    with pytest.raises(UserInputError, match="neither a zip nor a tar"):
        extract(tmp_path / "x.zip", tmp_path / "out")


# ---------------------------------------------------------------------------------------------- archive limits


def test_an_archive_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.bin", bytes(8 * 2**20))  # 8 MB of zeros in ~8 kB
    with pytest.raises(UserInputError) as info:
        extract(bomb, tmp_path / "out")
    message = str(info.value)
    assert str(bomb) in message and "8.4 MB" in message and "RECONET_EXTRACT_MAX_RATIO" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]
    extract(bomb, tmp_path / "out", max_ratio=10_000)  # a trusted archive: the limit raised on purpose
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == 8 * 2**20


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_the_total_size_limit_names_the_numbers_and_the_setting(tmp_path, make, monkeypatch):
    archive = make(tmp_path / "a.archive", {"a.bin": bytes(3000), "b.bin": bytes(3000)})
    monkeypatch.setenv("RECONET_EXTRACT_MAX_BYTES", "5000")
    with pytest.raises(UserInputError, match=r"declares 6\.0 kB unpacked.*RECONET_EXTRACT_MAX_BYTES") as info:
        extract(archive, tmp_path / "out", max_ratio=1e6)
    assert str(archive) in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_the_limits_are_counted_again_while_writing(tmp_path, make, monkeypatch):
    packed = make(tmp_path / "a.archive", {"a.bin": bytes(3000), "b.bin": bytes(3000)})
    listing = archive._zip_entries if make is _zip else archive._tar_entries
    lying = lambda path: [dataclasses.replace(e, size=0) for e in listing(path)]  # noqa: E731 - headers that lie
    monkeypatch.setattr(archive, "_zip_entries" if make is _zip else "_tar_entries", lying)
    with pytest.raises(UserInputError, match=r"has written 6\.0 kB unpacked"):
        extract(packed, tmp_path / "out", max_bytes=5000, max_ratio=1e6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.archive"]


def test_an_archive_larger_than_the_free_space_is_refused_up_front(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        archive = _zip(tmp_path / "big.zip", {"zeros.bin": bytes(5 * 2**20)})
        with pytest.raises(UserInputError, match=r"unpacks to 5\.2 MB but .*small has only .* free") as info:
            extract(archive, small / "out", max_ratio=1e6)
        assert str(archive) in str(info.value) and os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_two_members_of_one_name_are_refused(tmp_path, make):
    archive = tmp_path / "dup.archive"
    if make is _zip:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr("data/a.txt", b"first")
                zf.writestr("data/a.txt", b"second")
    else:
        with tarfile.open(archive, "w") as tf:
            for data in (b"first", b"second"):
                info = tarfile.TarInfo("data/a.txt")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UserInputError, match="two members named 'data/a.txt'") as info:
        extract(archive, tmp_path / "out")
    assert str(archive) in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_extracted_folders_follow_the_users_umask(tmp_path, make):
    archive = make(tmp_path / "a.archive", {"data/clean/a.png": b"A"})
    old = os.umask(0o022)
    try:
        out = extract(archive, tmp_path / "out")
    finally:
        os.umask(old)
    for folder in (out, out / "data", out / "data" / "clean"):
        assert folder.stat().st_mode & 0o777 == 0o755, folder


def test_a_truncated_tar_is_named_in_the_error(tmp_path):
    whole = _tar(tmp_path / "whole.tar.gz", {f"f{i}.bin": os.urandom(50_000) for i in range(4)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(UserInputError, match="damaged or truncated") as info:
        extract(cut, tmp_path / "out")
    assert str(cut) in str(info.value) and "download it again" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz", "whole.tar.gz"]
