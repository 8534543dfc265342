"""The bench's inputs, made once with FFmpeg and Pillow and kept (by their parameters) for later runs.

Three scales: ``full`` (what the targets are about: a 1080p clip, a 24 MP JPEG, a 12 MP PNG, a
500 MB upload), ``quick`` (the same kinds, shorter and smaller) and ``smoke`` (tiny, for the test
that keeps the harness working).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from apps.processors.ffmpeg import resolve_ffmpeg_binary


@dataclass(frozen=True)
class Sizes:
    video: tuple[int, int, float]  # width, height, seconds: the processing cases' clip
    small_video: tuple[int, int, float]  # the end-to-end and progress cases' clip
    audio_seconds: float
    jpeg: tuple[int, int]
    png: tuple[int, int]
    upload_bytes: int


SCALES = {
    "full": Sizes(
        video=(1920, 1080, 3.0),
        small_video=(640, 360, 2.0),
        audio_seconds=30.0,
        jpeg=(6000, 4000),
        png=(4000, 3000),
        # Just under MAX_FILE_SIZE_VIDEO (500 MiB) with room for the multipart framing.
        upload_bytes=500_000_000,
    ),
    "quick": Sizes(
        video=(1920, 1080, 2.0),
        small_video=(640, 360, 1.0),
        audio_seconds=10.0,
        jpeg=(6000, 4000),
        png=(4000, 3000),
        upload_bytes=100_000_000,
    ),
    "smoke": Sizes(
        video=(320, 240, 1.0),
        small_video=(160, 120, 1.0),
        audio_seconds=1.0,
        jpeg=(600, 400),
        png=(400, 300),
        upload_bytes=2_000_000,
    ),
}


class BenchMedia:
    def __init__(self, directory: Path, sizes: Sizes) -> None:
        self.directory = directory
        self.sizes = sizes
        directory.mkdir(parents=True, exist_ok=True)

    def _ffmpeg(self, *args: str) -> None:
        command = [resolve_ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
        subprocess.run(command, check=True, timeout=600)

    def _made(self, name: str, make) -> Path:
        path = self.directory / name
        if not path.exists():
            partial = path.with_name(f"partial-{path.name}")
            make(partial)
            partial.rename(path)
        return path

    def video(self, *, small: bool = False) -> Path:
        """A camera-like H.264 + AAC (128 kb/s stereo) MP4: a moving test pattern with grain."""
        width, height, seconds = self.sizes.small_video if small else self.sizes.video

        def make(path: Path) -> None:
            self._ffmpeg(
                *("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25,noise=alls=12:allf=t"),
                *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-ac", "2"),
                *("-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"),
                *("-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(path)),
            )

        return self._made(f"video-{width}x{height}-{seconds:g}s.mp4", make)

    def audio(self, extension: str) -> Path:
        """A stereo 44.1 kHz tone sweep: ``wav`` (PCM) or ``mp3`` (128 kb/s)."""
        seconds = self.sizes.audio_seconds
        codec = {"wav": ["-c:a", "pcm_s16le"], "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"]}[extension]

        def make(path: Path) -> None:
            source = f"aevalsrc=sin(2*PI*(220+200*t)*t)|sin(2*PI*(330+100*t)*t):s=44100:d={seconds}"
            self._ffmpeg("-f", "lavfi", "-i", source, *codec, "-f", extension, str(path))

        return self._made(f"audio-{seconds:g}s.{extension}", make)

    def _pattern(self, width: int, height: int, path: Path) -> Image.Image:
        """A detailed picture (test pattern with grain), so that codecs work as on a photo."""
        raw = path.with_suffix(".ppm")
        self._ffmpeg(
            *("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=1,noise=alls=16:allf=t"),
            *("-frames:v", "1", "-pix_fmt", "rgb24", "-f", "image2", "-c:v", "ppm", str(raw)),
        )
        with Image.open(raw) as image:
            picture = image.copy()
        raw.unlink()
        return picture

    def jpeg(self) -> Path:
        width, height = self.sizes.jpeg

        def make(path: Path) -> None:
            self._pattern(width, height, path).save(path, "JPEG", quality=92)

        return self._made(f"photo-{width}x{height}.jpg", make)

    def png(self) -> Path:
        """RGBA, with an alpha gradient so that transparency is real work for the encoder."""
        width, height = self.sizes.png

        def make(path: Path) -> None:
            picture = self._pattern(width, height, path)
            picture.putalpha(Image.linear_gradient("L").resize((width, height)))
            picture.save(path, "PNG")

        return self._made(f"picture-{width}x{height}-alpha.png", make)

    def tiny_jpeg(self) -> Path:
        return self._made("tiny.jpg", lambda path: Image.new("RGB", (64, 48), (200, 30, 30)).save(path, "JPEG"))

    def large_video(self) -> Path:
        """An MP4 of ``upload_bytes`` (a little over at most): a high-bitrate 1080p clip looped by
        stream copy, which takes seconds instead of encoding minutes of video."""
        size = self.sizes.upload_bytes

        def make(path: Path) -> None:
            grain = self.directory / "grain-1080p.mp4"
            if not grain.exists():
                self._ffmpeg(
                    *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25,noise=alls=40:allf=t", "-t", "2"),
                    *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "8", "-pix_fmt", "yuv420p", str(grain)),
                )
            self._ffmpeg(
                *("-stream_loop", "-1", "-i", str(grain), "-c", "copy", "-fs", str(size)),
                *("-f", "mp4", str(path)),
            )

        return self._made(f"upload-{size}.mp4", make)
