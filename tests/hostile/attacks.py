"""Hostile files, made by the tests themselves: each one is what an attacker would upload.

Every generator returns bytes; the tests decide the name (the disguise) and where the file lands.
Nothing here is media a user would produce by accident.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from io import BytesIO
from pathlib import Path

from PIL import Image

from apps.processors.ffmpeg import resolve_ffmpeg_binary

# --- files that make FFmpeg follow references ------------------------------------------------------


def hls_playlist(*, local_target: str, url: str) -> bytes:
    """An HLS playlist whose segments are a local file and a URL. FFmpeg's HLS demuxer opens
    both when it reads the playlist (recent builds only when it is named .m3u8)."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{local_target}\n#EXTINF:1.0,\n{url}\n#EXT-X-ENDLIST\n"
    ).encode()


def ffconcat_script(*, sibling: str) -> bytes:
    """An ffconcat script: FFmpeg's concat demuxer (detected from the first line) opens each
    ``file`` in turn; a relative name is read from the script's own directory. (A URL line would
    make the default "safe" mode refuse the whole script before anything is opened.)"""
    return f"ffconcat version 1.0\nfile {sibling}\nfile {sibling}\n".encode()


def concat_list(*, absolute_target: str) -> bytes:
    """A concat list without the header, naming an absolute path (needs ``-f concat -safe 0``)."""
    return f"file '{absolute_target}'\nfile '{absolute_target}'\n".encode()


def sdp_session(*, port: int) -> bytes:
    """An SDP description: FFmpeg's SDP demuxer opens RTP/UDP sockets to the address it names."""
    return (
        f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=konvrt\nc=IN IP4 127.0.0.1\nt=0 0\nm=video {port} RTP/AVP 96\n"
        "a=rtpmap:96 H264/90000\n"
    ).encode()


# Real container signatures, so that the content sniffer passes the file on to the probe.
SIGNATURES = {
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
    "mov": b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",
    "mkv": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x88matroska",
    "avi": b"RIFF\x00\x10\x00\x00AVI LIST\x04\x00\x00\x00hdrl",
    "wav": b"RIFF\x00\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00\x44\xac\x00\x00",
}


def behind_signature(extension: str, payload: bytes) -> bytes:
    """``payload`` after a valid signature of ``extension``'s container: sniffed as that
    container, it must then be read by that container's demuxer alone."""
    return SIGNATURES[extension] + b"\n" + payload


# --- a playlist hidden inside a real AVI ------------------------------------------------------------


def gab2_avi(*, frame_jpeg: bytes, subtitle: bytes, frames: int = 10, fps: int = 10) -> bytes:
    """A valid MJPEG AVI with a second, "txts" stream holding one GAB2 chunk around ``subtitle``.

    FFmpeg's AVI demuxer probes a GAB2 chunk's content and opens whatever demuxer it looks like on
    it (the trick behind the 2017 playlist-in-AVI file disclosure); current FFmpeg accepts only SRT
    and ASS there, Konvrt's format whitelist accepts none. With an SRT ``subtitle`` an unguarded
    FFmpeg reads a subrip stream: proof that the chunk is well formed.
    """
    with Image.open(BytesIO(frame_jpeg)) as image:
        width, height = image.size
    name = "konvrt".encode("utf-16-le") + b"\x00\x00"
    gab2 = b"GAB2\x00" + struct.pack("<H", 2) + struct.pack("<I", len(name)) + name
    gab2 += struct.pack("<H", 4) + struct.pack("<I", len(subtitle)) + subtitle

    def chunk(fourcc: bytes, data: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")

    def riff_list(kind: bytes, body: bytes) -> bytes:
        return b"LIST" + struct.pack("<I", len(body) + 4) + kind + body

    avih = struct.pack("<IIIIIIIIII16x", 1_000_000 // fps, 0, 0, 0x10, frames, 0, 2, len(frame_jpeg) + 8, width, height)

    def strh(kind: bytes, handler: bytes, length: int) -> bytes:
        return struct.pack(
            "<4s4sIHHIIIIIIiIhhhh", kind, handler, 0, 0, 0, 0, 1, fps, 0, length, 0, -1, 0, 0, 0, width, height
        )

    video_format = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    header = riff_list(
        b"hdrl",
        chunk(b"avih", avih)
        + riff_list(b"strl", chunk(b"strh", strh(b"vids", b"MJPG", frames)) + chunk(b"strf", video_format))
        + riff_list(b"strl", chunk(b"strh", strh(b"txts", b"\x00\x00\x00\x00", 1)) + chunk(b"strf", b"")),
    )
    packets = [(b"01tx", gab2)] + [(b"00dc", frame_jpeg)] * frames
    movi_body, index, offset = b"", b"", 4
    for fourcc, data in packets:
        index += struct.pack("<4sIII", fourcc, 0x10, offset, len(data))
        piece = chunk(fourcc, data)
        movi_body += piece
        offset += len(piece)
    body = b"AVI " + header + riff_list(b"movi", movi_body) + chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def srt_subtitle(text: str) -> bytes:
    return f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n".encode()


# --- images that need another decoder, or decode into far more than they weigh ----------------------


def eps_document() -> bytes:
    """Encapsulated PostScript: Pillow's EPS plugin hands it to Ghostscript to render."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\n"
        b"newpath 0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n"
    )


def svg_drawing(*, href: str) -> bytes:
    """An SVG that references another file (what a renderer would fetch)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="32" '
        f'height="32"><image xlink:href="{href}" width="32" height="32"/></svg>'
    ).encode()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(*, width: int, height: int, rgb: bool = False) -> bytes:
    """A real PNG of ``width`` × ``height`` black pixels, compressed to a few kilobytes: a
    decompression bomb. ``rgb`` makes it 3 bytes a pixel once decoded, else 1 bit."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (width * 3 if rgb else (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8 if rgb else 1, 2 if rgb else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def gif_animation(*, screen: tuple[int, int], frames: int, later_frames: tuple[int, int] | None = None) -> bytes:
    """A GIF89a whose logical screen is ``screen``, with ``frames`` frames alternating between two
    colours (so no encoder merges them), every one decodable: the first the size of the screen,
    the others ``later_frames`` (default: the screen too). Pillow only learns that a later frame is
    larger than the screen, and enlarges its canvas, when it reaches that frame. Each distinct
    frame is encoded once and repeated, so a thousand frames cost two encodes."""
    blocks: dict[tuple[tuple[int, int], int], bytes] = {}
    header = palette = b""
    for size, colour in [(screen, 0), (later_frames or screen, 1), (later_frames or screen, 0)]:
        header, palette, blocks[(size, colour)] = _gif_frame(size, colour)
    out = bytearray(b"GIF89a" + struct.pack("<HH", *screen) + header[10:13] + palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for index in range(frames):
        size = screen if index == 0 else (later_frames or screen)
        out += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"  # graphic control: 100 ms, keep the frame
        out += blocks[(size, index % 2)]
    out += b"\x3b"
    return bytes(out)


def _gif_frame(size: tuple[int, int], colour: int) -> tuple[bytes, bytes, bytes]:
    """(header, global palette, image block) of a one-frame GIF Pillow writes for a solid ``size``
    of palette entry ``colour`` (0 black, 1 white)."""
    image = Image.new("P", size, colour)
    image.putpalette([0, 0, 0, 255, 255, 255])
    encoded = BytesIO()
    image.save(encoded, "GIF", optimize=False)
    data = encoded.getvalue()
    palette_end = 13 + _palette_size(data[10])
    descriptor = data.index(b"\x2c", palette_end)
    return data[:13], data[13:palette_end], data[descriptor:-1]  # the block without the trailer


def _palette_size(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


# --- privacy ----------------------------------------------------------------------------------------
GPS_IFD = 0x8825


def jpeg_with_gps_and_comment(*, comment: bytes, latitude: tuple[int, int, int]) -> bytes:
    """A photo carrying GPS coordinates, a camera serial number and a comment."""
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "KonvrtCam"  # Make
    exif[0xA431] = "SERIAL-0042-SECRET"  # BodySerialNumber
    exif.get_ifd(GPS_IFD).update({1: "N", 2: latitude, 3: "E", 4: (2, 17, 40)})
    buffer = BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), comment=comment, quality=90)
    return buffer.getvalue()


# --- resource bombs ---------------------------------------------------------------------------------
def audio_with_cover(*, audio: Path, cover: Path, output: Path) -> Path:
    """``audio`` with ``cover`` attached as its cover picture (ID3 APIC for MP3), stream-copied."""
    command = [resolve_ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-i", str(audio), "-i", str(cover), "-map", "0:a", "-map", "1:v", "-c", "copy"]
    command += ["-disposition:v", "attached_pic", "-id3v2_version", "3", str(output)]
    subprocess.run(command, check=True, timeout=60)
    return output


def with_tags(*, source: Path, output: Path, tags: dict[str, str]) -> Path:
    """``source`` stream-copied into ``output`` with ``tags`` on the file and on every stream."""
    command = [resolve_ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    command += ["-map", "0", "-c", "copy"]
    for key, value in tags.items():
        command += ["-metadata", f"{key}={value}", "-metadata:s", f"{key}={value}"]
    if output.suffix in (".mp4", ".mov", ".m4a"):
        command += ["-movflags", "+use_metadata_tags"]  # keep arbitrary keys, not only iTunes ones
    subprocess.run([*command, str(output)], check=True, timeout=60)
    return output
