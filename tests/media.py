"""Small real media made at test time with FFmpeg and Pillow.

Each generator writes into a cache directory and returns the path; the same arguments give the
same file, so a suite run encodes each sample once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw

from apps.processors.ffmpeg import resolve_ffmpeg_binary
from apps.processors.formats import MediaType, get_format

# (video codec args, audio codec args) per container.
_VIDEO_CODECS: dict[str, tuple[list[str], list[str]]] = {
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "96k"]),
    "mov": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "96k"]),
    "mkv": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "96k"]),
    "webm": (
        ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
        ["-c:a", "libopus", "-b:a", "64k"],
    ),
    "avi": (["-c:v", "mpeg4", "-q:v", "5"], ["-c:a", "libmp3lame", "-b:a", "96k"]),
    "wmv": (["-c:v", "wmv2", "-b:v", "300k"], ["-c:a", "wmav2", "-b:a", "64k"]),
    "flv": (["-c:v", "flv1", "-b:v", "300k"], ["-c:a", "libmp3lame", "-b:a", "64k", "-ar", "44100"]),
    "m4v": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "96k"]),
    "3gp": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "64k"]),
    "mpg": (["-c:v", "mpeg2video", "-q:v", "5"], ["-c:a", "mp2", "-b:a", "128k"]),
    "ts": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac", "-b:a", "96k"]),
}

_AUDIO_CODECS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "aac": ["-c:a", "aac", "-b:a", "128k", "-f", "adts"],
    "m4a": ["-c:a", "aac", "-b:a", "128k"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    "flac": ["-c:a", "flac"],
    "opus": ["-c:a", "libopus", "-b:a", "64k"],
    "oga": ["-c:a", "libvorbis", "-q:a", "3"],
    "aiff": ["-c:a", "pcm_s16be"],
    "wma": ["-c:a", "wmav2", "-b:a", "64k"],
}


class MediaFactory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, extension: str, **arguments: object) -> Path:
        digest = hashlib.sha1(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return self.directory / f"{kind}-{digest}.{extension}"

    @staticmethod
    def _ffmpeg(*args: str) -> None:
        command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
        subprocess.run(command, check=True, timeout=120)

    def video(
        self,
        *,
        extension: str = "mp4",
        duration: float = 2.0,
        width: int = 320,
        height: int = 240,
        fps: int = 25,
        audio: bool = True,
        noisy: bool = False,
    ) -> Path:
        """A test pattern (with a 440 Hz tone when ``audio``). ``noisy`` makes a high-bitrate
        near-lossless H.264 file, the kind that compression must shrink."""
        path = self._path(
            "video", extension, duration=duration, width=width, height=height, fps=fps, audio=audio, noisy=noisy
        )
        if path.exists():
            return path
        source = f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}"
        if noisy:
            source += ",noise=alls=40:allf=t"
        args = ["-f", "lavfi", "-i", source]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={duration}", "-ac", "2"]
        video_codec, audio_codec = _VIDEO_CODECS[extension]
        if noisy:
            video_codec = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "4", "-pix_fmt", "yuv420p"]
        args += video_codec + (audio_codec if audio else ["-an"])
        self._ffmpeg(*args, "-t", str(duration), str(path))
        return path

    def audio(
        self,
        *,
        extension: str = "wav",
        duration: float = 2.0,
        sample_rate: int = 44100,
        channels: int = 2,
        cover_art: bool = False,
    ) -> Path:
        path = self._path(
            "audio", extension, duration=duration, sample_rate=sample_rate, channels=channels, cover_art=cover_art
        )
        if path.exists():
            return path
        if extension == "opus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
            sample_rate = 48000
        layout = "mono" if channels == 1 else "stereo"
        args = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}:duration={duration}"]
        if cover_art:
            args += ["-i", str(self.jpeg(width=600, height=600)), "-map", "0:a", "-map", "1:v"]
            args += ["-c:v", "copy", "-disposition:v", "attached_pic", "-id3v2_version", "3"]
        args += ["-af", f"aformat=channel_layouts={layout}"] + _AUDIO_CODECS[extension]
        self._ffmpeg(*args, "-t", str(duration), str(path))
        return path

    # --- images -----------------------------------------------------------------------------
    def _pattern(self, width: int, height: int, mode: str = "RGB") -> Image.Image:
        """Left half red, right half blue: orientation is visible in the pixels."""
        image = Image.new(mode, (width, height), (255, 0, 0, 255) if mode == "RGBA" else (255, 0, 0))
        ImageDraw.Draw(image).rectangle(
            [width // 2, 0, width, height], fill=(0, 0, 255, 255) if mode == "RGBA" else (0, 0, 255)
        )
        return image

    def jpeg(self, *, width: int = 64, height: int = 32, orientation: int | None = None, quality: int = 95) -> Path:
        """A JPEG; with ``orientation`` its EXIF says how to rotate it for display."""
        path = self._path("jpeg", "jpg", width=width, height=height, orientation=orientation, quality=quality)
        if not path.exists():
            image = self._pattern(width, height)
            exif = Image.Exif()
            if orientation:
                exif[0x0112] = orientation
            image.save(path, "JPEG", quality=quality, exif=exif.tobytes())
        return path

    def png(self, *, width: int = 64, height: int = 64, alpha: bool = True) -> Path:
        """A PNG; with ``alpha`` its left half is fully transparent."""
        path = self._path("png", "png", width=width, height=height, alpha=alpha)
        if not path.exists():
            image = self._pattern(width, height, "RGBA" if alpha else "RGB")
            if alpha:
                ImageDraw.Draw(image).rectangle([0, 0, width // 2 - 1, height], fill=(0, 0, 0, 0))
            image.save(path, "PNG")
        return path

    def gif(self, *, width: int = 32, height: int = 32, frames: int = 3) -> Path:
        """An animated GIF whose frames are different solid colours."""
        path = self._path("gif", "gif", width=width, height=height, frames=frames)
        if not path.exists():
            colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
            images = [Image.new("RGB", (width, height), colours[i % 3]) for i in range(frames)]
            images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
        return path

    def webp(self, *, width: int = 48, height: int = 48) -> Path:
        path = self._path("webp", "webp", width=width, height=height)
        if not path.exists():
            self._pattern(width, height).save(path, "WEBP", quality=80)
        return path

    def bmp(self, *, width: int = 40, height: int = 30) -> Path:
        path = self._path("bmp", "bmp", width=width, height=height)
        if not path.exists():
            self._pattern(width, height).save(path, "BMP")
        return path

    def tif(self, *, width: int = 40, height: int = 30) -> Path:
        path = self._path("tif", "tif", width=width, height=height)
        if not path.exists():
            self._pattern(width, height).save(path, "TIFF", compression="tiff_deflate")
        return path

    def heic(self, *, width: int = 64, height: int = 48) -> Path:
        """A HEIC photo as an iPhone writes it (HEVC in HEIF), through pillow-heif's encoder."""
        path = self._path("heic", "heic", width=width, height=height)
        if not path.exists():
            self._pattern(width, height).save(path, "HEIF", quality=90)
        return path

    def avif(self, *, width: int = 48, height: int = 48) -> Path:
        path = self._path("avif", "avif", width=width, height=height)
        if not path.exists():
            self._pattern(width, height).save(path, "AVIF", quality=90)
        return path

    def sample(self, extension: str) -> Path:
        """A small file of any format Konvrt reads or writes (half a second of video or audio)."""
        media_type = get_format(extension).media_type
        if media_type == MediaType.VIDEO:
            return self.video(extension=extension, duration=0.5)
        if media_type == MediaType.AUDIO:
            return self.audio(extension=extension, duration=0.5)
        return getattr(self, "jpeg" if extension in ("jpg", "jpeg") else extension)()

    def text(self, *, extension: str, content: bytes = b"this is not media\n") -> Path:
        """A file whose name claims a media type and whose content is not."""
        path = self._path("text", extension, content=content.hex())
        if not path.exists():
            path.write_bytes(content)
        return path
