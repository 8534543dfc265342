"""Every file format Konvrt knows, in one table; every other list of formats is derived from it.

Each entry says what a format is (its media type, the label people read in messages, its MIME
type), how it is read (the FFmpeg demuxer, or Pillow's format for images: content is only ever
decoded as the format it was accepted as) and, for formats Konvrt writes, how it is written (the
FFmpeg muxer or Pillow format, and for audio the codec that goes in it). Which operation takes
and makes which formats is the registry's business (``registry.py``); what a format *is* lives
here. Adding a format means adding its entry here (and, if its content is new, its signature in
``sniffing.py``).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from django.db import models


class MediaType(models.TextChoices):
    VIDEO = "video", "Video"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"


@dataclass(frozen=True)
class Format:
    extension: str
    media_type: MediaType
    label: str  # for messages: "an MP4 video"
    mime_type: str
    # How it is read: FFmpeg's demuxer for audio and video, Pillow's format for images.
    decoder: str
    # How it is written (empty for formats Konvrt only reads): FFmpeg's muxer or Pillow's format.
    encoder: str = ""
    # Audio outputs: the codec that goes in the container (as the probe names it), FFmpeg's
    # encoder for it, and whether it is lossless (no bitrate applies).
    audio_codec: str = ""
    audio_encoder: str = ""
    lossless: bool = False
    # Another name for a format stored under its main extension ("jpeg" is a JPEG stored as "jpg").
    alias_of: str = ""

    @property
    def writable(self) -> bool:
        return bool(self.encoder) and not self.alias_of

    @property
    def demuxer(self) -> str:
        return self.decoder

    @property
    def pillow_format(self) -> str:
        return self.decoder


def _video(extension: str, label: str, mime_type: str, demuxer: str, muxer: str = "", *, alias_of: str = "") -> Format:
    return Format(extension, MediaType.VIDEO, label, mime_type, demuxer, muxer, alias_of=alias_of)


def _audio(
    extension: str,
    label: str,
    mime_type: str,
    demuxer: str,
    muxer: str = "",
    *,
    codec: str = "",
    encoder: str = "",
    lossless: bool = False,
    alias_of: str = "",
) -> Format:
    return Format(
        extension,
        MediaType.AUDIO,
        label,
        mime_type,
        demuxer,
        muxer,
        audio_codec=codec,
        audio_encoder=encoder,
        lossless=lossless,
        alias_of=alias_of,
    )


def _image(
    extension: str, label: str, mime_type: str, pillow_format: str, *, writable: bool = False, alias_of: str = ""
) -> Format:
    encoder = pillow_format if writable else ""
    return Format(extension, MediaType.IMAGE, label, mime_type, pillow_format, encoder, alias_of=alias_of)


# In the order they are listed to users. An alias is another name for a format and is stored under
# its main extension: a ".tiff" upload is kept as ".tif", an ".oga" sound as ".ogg".
FORMATS: dict[str, Format] = {
    entry.extension: entry
    for entry in (
        _video("mp4", "an MP4 video", "video/mp4", "mov", "mp4"),
        # Apple's name for an MP4 video (iTunes, old iPhones): the same container and codecs.
        _video("m4v", "an M4V video", "video/x-m4v", "mov", alias_of="mp4"),
        # The MP4 family also covers classic QuickTime files, whose atoms come before any "ftyp".
        _video("mov", "a QuickTime (MOV) video", "video/quicktime", "mov", "mov"),
        # Phone video (H.263/H.264 with AMR or AAC) in the MP4 family: read by the same demuxer.
        _video("3gp", "a 3GP phone video", "video/3gpp", "mov"),
        _video("avi", "an AVI video", "video/x-msvideo", "avi"),
        _video("mkv", "a Matroska (MKV) video", "video/x-matroska", "matroska"),
        _video("webm", "a WebM video", "video/webm", "matroska", "webm"),
        _video("wmv", "a Windows Media (WMV) video", "video/x-ms-wmv", "asf"),
        _video("flv", "a Flash (FLV) video", "video/x-flv", "flv"),
        # MPEG-1/2 program streams (DVD rips, old camcorders) and transport streams (TV recordings,
        # camcorder .mts files).
        _video("mpg", "an MPEG video", "video/mpeg", "mpeg"),
        _video("mpeg", "an MPEG video", "video/mpeg", "mpeg", alias_of="mpg"),
        _video("ts", "an MPEG transport stream (TS) video", "video/mp2t", "mpegts"),
        _image("jpg", "a JPEG image", "image/jpeg", "JPEG", writable=True),
        _image("jpeg", "a JPEG image", "image/jpeg", "JPEG", writable=True, alias_of="jpg"),
        _image("png", "a PNG image", "image/png", "PNG", writable=True),
        _image("webp", "a WebP image", "image/webp", "WEBP", writable=True),
        # Pillow's own AVIF plugin (libavif) reads and writes it.
        _image("avif", "an AVIF image", "image/avif", "AVIF", writable=True),
        # Written only by image_resize, which keeps an animated GIF a GIF (see image.py).
        _image("gif", "a GIF image", "image/gif", "GIF", writable=True),
        _image("bmp", "a BMP image", "image/bmp", "BMP"),
        _image("tif", "a TIFF image", "image/tiff", "TIFF"),
        _image("tiff", "a TIFF image", "image/tiff", "TIFF", alias_of="tif"),
        # iPhone photos; read through pillow-heif's plugin for Pillow (``probe.py`` registers it).
        _image("heic", "a HEIC image", "image/heic", "HEIF"),
        _image("heif", "a HEIF image", "image/heif", "HEIF", alias_of="heic"),
        _audio("mp3", "an MP3 audio file", "audio/mpeg", "mp3", "mp3", codec="mp3", encoder="libmp3lame"),
        _audio(
            "wav", "a WAV audio file", "audio/wav", "wav", "wav", codec="pcm_s16le", encoder="pcm_s16le", lossless=True
        ),
        # Raw AAC in ADTS frames, which every player reads without a container.
        _audio("aac", "an AAC audio file", "audio/aac", "aac", "adts", codec="aac", encoder="aac"),
        _audio("m4a", "an M4A audio file", "audio/mp4", "mov"),
        _audio("ogg", "an Ogg Vorbis audio file", "audio/ogg", "ogg", "ogg", codec="vorbis", encoder="libvorbis"),
        # The extension desktop sound themes use for Ogg audio.
        _audio("oga", "an Ogg audio file", "audio/ogg", "ogg", alias_of="ogg"),
        _audio("flac", "a FLAC audio file", "audio/flac", "flac", "flac", codec="flac", encoder="flac", lossless=True),
        _audio("opus", "an Opus audio file", "audio/opus", "ogg"),
        _audio("aiff", "an AIFF audio file", "audio/aiff", "aiff"),
        _audio("aif", "an AIFF audio file", "audio/aiff", "aiff", alias_of="aiff"),
        # Windows Media Audio: the ASF container of WMV holding only sound.
        _audio("wma", "a Windows Media Audio (WMA) file", "audio/x-ms-wma", "asf"),
    )
}


def get_format(extension: str) -> Format:
    """The catalog entry for ``extension`` (no dot, any case); ``KeyError`` for one Konvrt lacks."""
    return FORMATS[extension.lower().lstrip(".")]


def readable_formats(media_type: MediaType) -> tuple[str, ...]:
    """The extensions of every format of ``media_type`` Konvrt can read, aliases included."""
    return tuple(entry.extension for entry in FORMATS.values() if entry.media_type == media_type)


def writable_formats(media_type: MediaType) -> tuple[str, ...]:
    """The extensions of every format of ``media_type`` Konvrt can write."""
    return tuple(entry.extension for entry in FORMATS.values() if entry.media_type == media_type and entry.writable)


def media_type_of(extension: str) -> MediaType | None:
    entry = FORMATS.get(extension.lower().lstrip("."))
    return entry.media_type if entry is not None else None


def decoders(media_type: MediaType) -> dict[str, str]:
    """Extension → FFmpeg demuxer (audio and video) or Pillow format (images)."""
    media = {media_type} if media_type == MediaType.IMAGE else {MediaType.VIDEO, MediaType.AUDIO}
    return {entry.extension: entry.decoder for entry in FORMATS.values() if entry.media_type in media}


def mime_type_for_extension(extension: str) -> str:
    """The MIME type a file with this extension is served as: the catalog's, else the platform's
    guess (whose answers for some of ours, ``audio/x-wav`` or ``audio/ogg`` for Opus, are wrong)."""
    extension = extension.lower().lstrip(".")
    if extension in FORMATS:
        return FORMATS[extension].mime_type
    guessed, _ = mimetypes.guess_type(f"file.{extension}")
    return guessed or "application/octet-stream"
