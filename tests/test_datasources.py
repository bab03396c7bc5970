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
