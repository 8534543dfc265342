"""What an uploaded file really is, decided from its content, never from its name.

``inspect_upload`` is the single entry point: it reads the first bytes (magic numbers) to find the
container, checks that it is a format the operation accepts, then probes the file with the
demuxer (or Pillow decoder) pinned to that format, so content sniffed as one format is never
reinterpreted as another. It returns what to store the file as and its probed metadata, or raises
``UnsupportedMedia`` (415) with a sentence the uploader can act on.

Only the containers below are ever accepted. Text formats that make FFmpeg follow references
(HLS playlists, concat scripts, SDP session descriptions) and documents that would need another
decoder (PostScript/EPS needs Ghostscript, SVG a renderer) have no signature here, so they are
refused whatever their name; the ones an attacker would send are named in the message and logged.
Media over the worker's caps (pixels, picture size, duration) is refused here too (400), with the
same sentence the worker would fail it with, so that it is never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from apps.core.exceptions import UnsupportedMedia, ValidationFailed
from apps.processors.exceptions import ProbeError, ProcessingError
from apps.processors.formats import FORMATS, Format, MediaType
from apps.processors.inspection import check_image_limits, check_media_limits, too_many_pixels_message
from apps.processors.probe import ImageTooLarge, probe_image, probe_media
from apps.processors.registry import OperationDefinition

logger = logging.getLogger(__name__)

# Enough for every signature below, including an Ogg page header and a Matroska EBML header.
SNIFF_BYTES = 4096
# An ID3v2 tag in front of MP3/AAC/FLAC data can be large (cover art); we look past it.
ID3_HEADER_SIZE = 10


@dataclass(frozen=True)
class UploadInspection:
    media_type: MediaType
    container: str  # the demuxer or Pillow format that read it: "mov", "matroska", "PNG"
    extension: str
    mime_type: str
    metadata: dict[str, Any]


# The formats a signature below can name, from the catalog.
MP4, MOV, M4A, THREE_GP = FORMATS["mp4"], FORMATS["mov"], FORMATS["m4a"], FORMATS["3gp"]
WEBM, MKV, AVI, WMV, FLV = FORMATS["webm"], FORMATS["mkv"], FORMATS["avi"], FORMATS["wmv"], FORMATS["flv"]
MPEG_PS, MPEG_TS = FORMATS["mpg"], FORMATS["ts"]
MP3, AAC, WAV, OGG, OPUS, FLAC = (FORMATS[name] for name in ("mp3", "aac", "wav", "ogg", "opus", "flac"))
AIFF, WMA = FORMATS["aiff"], FORMATS["wma"]
JPEG, PNG, GIF, WEBP, BMP = FORMATS["jpg"], FORMATS["png"], FORMATS["gif"], FORMATS["webp"], FORMATS["bmp"]
TIFF, HEIC, AVIF = FORMATS["tif"], FORMATS["heic"], FORMATS["avif"]

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")

# ISO base media ("ftyp") brands that say what the file is; anything else is read as MP4.
_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
# Atoms a classic QuickTime file (before 2001, and many cameras since) starts with instead of "ftyp".
_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# MPEG transport streams: 188-byte packets starting with 0x47 (192 with a 4-byte timecode in front
# on Blu-ray and AVCHD ".m2ts"/".mts"); three packets in a row make it more than chance.
_TS_PACKETS = ((0, 188), (4, 192))

# Formats refused like any unknown content, recognised only to say what they are. The first four
# point FFmpeg at other files or at the network; the others need decoders Konvrt never runs.
_REFERENCE_FORMATS = (
    (b"#EXTM3U", "an HLS playlist"),
    (b"ffconcat", "an FFmpeg concat script"),
    (b"file '", "an FFmpeg concat script"),
    (b"v=0", "an SDP session description"),
)
_DOCUMENT_FORMATS = (
    (b"%!PS", "a PostScript (EPS) document"),
    (b"\xc5\xd0\xd3\xc6", "an EPS document"),
    (b"<?xml", "an XML (SVG) document"),
    (b"<svg", "an SVG drawing"),
)


def sniff_formats(head: bytes) -> list[Format]:
    """Every format the first bytes of a file can be, most likely first (``[]``: none we accept).

    One container can carry several media types (an MP4 file holds video or only audio), so the
    caller picks the candidate of the media type it needs and the probe confirms the streams.
    """
    if head[4:8] == b"ftyp" or head[4:8] in _QUICKTIME_ATOMS:
        return _iso_media(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header names the document type within its first few dozen bytes.
        return [WEBM] if b"webm" in head[:64] else [MKV]
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WAVE": [WAV], b"AVI ": [AVI], b"WEBP": [WEBP]}.get(head[8:12], [])
    if head.startswith(_ASF_GUID):
        return [WMV, WMA]
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return [AIFF]
    if head.startswith(b"\x00\x00\x01\xba"):  # an MPEG program stream's pack header
        return [MPEG_PS]
    if any(_is_transport_stream(head, offset, size) for offset, size in _TS_PACKETS):
        return [MPEG_TS]
    if head.startswith(b"FLV\x01"):
        return [FLV]
    if head.startswith(b"OggS"):
        # The first page carries the codec's identification header.
        return [OPUS] if b"OpusHead" in head[:128] else [OGG]
    if head.startswith(b"fLaC"):
        return [FLAC]
    if head.startswith(b"ID3") and len(head) >= ID3_HEADER_SIZE:
        return _after_id3(head)
    if head.startswith(b"\xff\xd8\xff"):
        return [JPEG]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return [PNG]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return [GIF]
    if head.startswith(b"BM") and len(head) >= 26:
        return [BMP]
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
        return [TIFF]
    return _mpeg_audio(head)


def _iso_media(head: bytes) -> list[Format]:
    """The ISO base media family (MP4, MOV, M4A, 3GP, HEIC, AVIF): the brand in the "ftyp" atom
    says which. Classic QuickTime files have no "ftyp": their first atoms are the movie itself
    ("moov", "mdat") or padding ("wide", "free", "skip") and a preview ("pnot"), skipped here to
    reach an "ftyp" if one follows."""
    position = 0
    while position + 8 <= len(head):
        size, kind = int.from_bytes(head[position : position + 4], "big"), head[position + 4 : position + 8]
        if kind == b"ftyp":
            return _by_brand(head[position + 8 : position + 12], head[position + 16 : position + max(size, 16)])
        if kind not in _QUICKTIME_ATOMS:
            break
        if kind in (b"moov", b"mdat") or size < 8:
            break  # the movie itself (or an atom reaching to the end of the file): no "ftyp" to come
        position += size
    return [MOV, M4A]


def _by_brand(brand: bytes, compatible: bytes) -> list[Format]:
    compatible_brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
    if brand in _AVIF_BRANDS or (brand in (b"mif1", b"msf1") and compatible_brands & set(_AVIF_BRANDS)):
        return [AVIF]
    if brand in _HEIF_BRANDS:
        return [HEIC]
    if brand in _AUDIO_BRANDS:
        return [M4A, MP4]
    if brand == b"qt  ":
        return [MOV, M4A]
    if brand.startswith((b"3gp", b"3g2")):
        return [THREE_GP, M4A]
    return [MP4, M4A]


def _is_transport_stream(head: bytes, offset: int, packet_size: int) -> bool:
    starts = range(offset, offset + 3 * packet_size, packet_size)
    return len(head) > starts[-1] and all(head[start] == 0x47 for start in starts)


def _after_id3(head: bytes) -> list[Format]:
    # The tag's size is four 7-bit bytes ("synchsafe"); what follows it is the real stream.
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    rest = head[ID3_HEADER_SIZE + size :]
    if rest.startswith(b"fLaC"):
        return [FLAC]
    # A tag longer than what we read (cover art) hides the first frame: the probe decides.
    return _mpeg_audio(rest) if rest else [MP3]


def _mpeg_audio(head: bytes) -> list[Format]:
    if len(head) < 2 or head[0] != 0xFF:
        return []
    if head[1] & 0xF6 == 0xF0:  # 12-bit sync, layer bits 00: an ADTS AAC frame
        return [AAC]
    if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # 11-bit sync and a layer: an MPEG audio frame
        return [MP3]
    return []


def inspect_upload(*, path: Path, definition: OperationDefinition) -> UploadInspection:
    """Decide from its content whether ``path`` is media ``definition`` can process."""
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
    candidates = sniff_formats(head)
    wanted = definition.media_type
    accepted = ", ".join(definition.input_formats)
    sniffed = next((c for c in candidates if c.media_type == wanted), None)
    if sniffed is None and candidates:
        _reject(f"This file is {candidates[0].label}, but {definition.name} needs {_A_MEDIA[wanted]}.")
    if sniffed is None:
        _reject_unknown(head, wanted=wanted, accepted=accepted)
    if sniffed.extension not in definition.input_formats:
        _reject(f"{definition.name} does not accept {sniffed.label} (accepted formats: {accepted}).")

    try:
        if sniffed.media_type == MediaType.IMAGE:
            container = sniffed.pillow_format
            image = probe_image(path, allowed_formats=(container,))
            check_image_limits(image)
            metadata = image.as_metadata()
        else:
            container = sniffed.demuxer
            media = probe_media(path, format_name=container)
            streams = media.video_streams if sniffed.media_type == MediaType.VIDEO else media.audio_streams
            if not streams:
                _reject(f"This file holds no {sniffed.media_type.label.lower()} stream to work on.")
            # An audio operation given sound with a picture track (an M4A carrying a video) works
            # on the sound; an operation that needs a track the file lacks is refused now, not
            # stored to fail in the worker.
            required = definition.required_stream
            if required is not None and (media.video if required.kind == "video" else media.audio) is None:
                _refuse(required.missing_message)
            check_media_limits(media)
            metadata = media.as_metadata()
    except ImageTooLarge as e:
        _over_limit(too_many_pixels_message(), cause=e)
    except ProbeError as e:
        logger.info("Upload rejected: looked like %s but could not be read: %s", sniffed.extension, e)
        _reject(f"This file looks like {sniffed.label} but could not be read; it may be damaged.", cause=e)
    except ProcessingError as e:
        _over_limit(e.user_message, cause=e)

    return UploadInspection(
        media_type=sniffed.media_type,
        container=container,
        extension=sniffed.extension,
        mime_type=sniffed.mime_type,
        # The format as people name it ("mp4"), not FFmpeg's demuxer for it ("mov").
        metadata={**metadata, "format": sniffed.extension},
    )


_A_MEDIA = {MediaType.VIDEO: "a video", MediaType.IMAGE: "an image", MediaType.AUDIO: "an audio file"}


def _reject_unknown(head: bytes, *, wanted: MediaType, accepted: str) -> NoReturn:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")  # a text file's BOM and leading blank lines
    for signature, label in _REFERENCE_FORMATS:
        if start.startswith(signature):
            # Not a mistake a user makes by accident: worth an operator's attention.
            logger.warning("Upload refused: %s (it makes FFmpeg open other files or URLs)", label)
            _reject(f"This file is {label}, not {_A_MEDIA[wanted]}; upload the media file itself.")
    for signature, label in _DOCUMENT_FORMATS:
        if start.startswith(signature):
            _reject(f"This file is {label}, not {_A_MEDIA[wanted]} Konvrt can read (accepted formats: {accepted}).")
    _reject(f"This file is not {_A_MEDIA[wanted]} Konvrt can read (accepted formats: {accepted}).")


def _reject(message: str, *, cause: Exception | None = None) -> NoReturn:
    raise UnsupportedMedia(message, details={"file": [message]}) from cause


def _over_limit(message: str, *, cause: Exception) -> NoReturn:
    # Readable media of an accepted type, only too big to process: a 400, not a 415.
    logger.info("Upload refused over a processing cap: %s", message)
    raise ValidationFailed(message, details={"file": [message]}) from cause


def _refuse(message: str) -> NoReturn:
    # Readable media of an accepted type that this operation cannot work on: a 400, not a 415.
    raise ValidationFailed(message, details={"file": [message]})
