from __future__ import annotations

import pytest

from apps.core.utils import file_extension, sanitize_filename


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("holiday.mp4", "holiday.mp4"),
        ("../../x.mp4", "x.mp4"),
        ("..\\..\\windows\\evil.avi", "evil.avi"),
        ("/etc/passwd", "passwd"),
        ("-vf.mp4", "vf.mp4"),
        ("...hidden.png", "hidden.png"),
        ("bad\x00name\x1f.wav", "badname.wav"),
        ('a:b*c?"d<e>f|g.jpg', "a_b_c__d_e_f_g.jpg"),
        ("été à Zürich.mp3", "été à Zürich.mp3"),
        ("   ", "file"),
        ("", "file"),
        ("../", "file"),
    ],
)
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_caps_length_and_keeps_extension():
    name = sanitize_filename("a" * 1000 + ".webm")
    assert len(name) == 200
    assert name.endswith(".webm")


@pytest.mark.parametrize(
    ("name", "extension"), [("a.MP4", "mp4"), ("archive.tar.gz", "gz"), ("noext", ""), (".bashrc", ""), ("", "")]
)
def test_file_extension(name, extension):
    assert file_extension(name) == extension
