"""vidcolor.datasources.fetch finds a cached wheel or source archive by name and version, without pip."""
from __future__ import annotations

from vidcolor.datasources import fetch


def test_fetch_takes_the_cached_archive_of_that_version(tmp_path):
    for name in ("scikit_image-0.26.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "scikit_image-0.26.01-cp311-cp311-manylinux_2_28_x86_64.whl",  # another version
                 "Kivy_examples-2.3.1-py3-none-any.whl",
                 "insightface-0.7.3.tar.gz", "insightface-0.7.30.tar.gz"):
        (tmp_path / name).write_bytes(b"")
    assert fetch("scikit-image==0.26.0", tmp_path).name.startswith("scikit_image-0.26.0-")
    assert fetch("kivy-examples==2.3.1", tmp_path).name == "Kivy_examples-2.3.1-py3-none-any.whl"
    assert fetch("insightface==0.7.3", tmp_path, sdist=True).name == "insightface-0.7.3.tar.gz"


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-1 Qt resource file with one folder "pics" holding ``files`` (name: (data, zlib?))."""
    import struct
    import zlib

    names, payload, offsets = b"", b"", {}
    for n in ["pics", *files]:
        offsets[n] = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")
    nodes = [struct.pack(">IHII", 0, 2, 1, 1),                       # root: 1 child, node 1
             struct.pack(">IHII", offsets["pics"], 2, len(files), 2)]  # pics: its files from node 2
    for n, (data, packed) in files.items():
        blob = struct.pack(">I", len(data)) + zlib.compress(data) if packed else data
        nodes.append(struct.pack(">IHHHI", offsets[n], 1 if packed else 0, 0, 0, len(payload)))
        payload += struct.pack(">I", len(blob)) + blob
    tree = b"".join(nodes)
    head = 20
    return b"qres" + struct.pack(">IIII", 1, head, head + len(tree), head + len(tree) + len(payload)) \
        + tree + payload + names


def test_rcc_file_reads_plain_and_zlib_members():
    import pytest

    from vidcolor.datasources import rcc_file

    blob = _rcc({"a.webp": (b"plain bytes", False), "b.jpg": (b"squeezed " * 50, True)})
    assert rcc_file(blob, ":/pics/a.webp") == b"plain bytes"
    assert rcc_file(blob, ":/pics/b.jpg") == b"squeezed " * 50
    with pytest.raises(KeyError):
        rcc_file(blob, ":/pics/c.png")
    with pytest.raises(ValueError, match="Qt resource"):
        rcc_file(b"PK\x03\x04" + blob[4:], ":/pics/a.webp")


def test_package_file_reads_one_member_of_a_cached_wheel_or_sdist(tmp_path):
    import io
    import tarfile
    import zipfile

    import pytest

    from vidcolor.datasources import package_file

    with zipfile.ZipFile(tmp_path / "demo_pkg-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("demo_pkg/photo.jpg", b"wheel bytes")
    with tarfile.open(tmp_path / "demo_pkg-1.0.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("demo_pkg-1.0/tests/photo.jpg")
        info.size = len(b"sdist bytes")
        tf.addfile(info, io.BytesIO(b"sdist bytes"))
    assert package_file("wheel", "demo-pkg==1.0", "demo_pkg/photo.jpg", tmp_path) == b"wheel bytes"
    assert package_file("sdist", "demo-pkg==1.0", "demo_pkg-1.0/tests/photo.jpg", tmp_path) == b"sdist bytes"
    with pytest.raises(ValueError, match="rpm"):
        package_file("rpm", "demo-pkg==1.0", "x", tmp_path)


def test_download_deb_names_the_cure_when_apt_lacks_the_version(tmp_path, monkeypatch):
    """A fresh machine's stale package lists miss a pinned security update: one clear line, no traceback."""
    import subprocess

    import pytest

    from vidcolor import datasources
    from vidcolor.errors import VidcolorError

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or subprocess.CompletedProcess(args, 100))
    with pytest.raises(VidcolorError, match=r"could not download imagemagick-6-doc=8:6\.9.*apt-get update"):
        datasources.download_deb("imagemagick-6-doc=8:6.9.11.60+dfsg-1.6+deb12u16", tmp_path)
    assert calls and calls[0][:2] == ["apt-get", "download"]
    (tmp_path / "imagemagick-6-doc_8%3a6.9_all.deb").write_bytes(b"")  # cached: apt is not asked again
    calls.clear()
    assert datasources.download_deb("imagemagick-6-doc=8:6.9.11.60+dfsg-1.6+deb12u16", tmp_path).exists()
    assert not calls
