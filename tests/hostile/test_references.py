"""FFmpeg never follows references inside an uploaded file.

Playlists (HLS), concat scripts and SDP descriptions make FFmpeg open other local files (another
user's upload) or network connections. Each attack below is disguised as an accepted format, by
name or behind a real container signature, or hidden inside a real AVI (a GAB2 subtitle chunk).
A tripwire (a named pipe that records being opened, and would feed a secret marker to its reader)
stands where the attack points, and a local listener on the port it names. The guarded paths
(the API's sniffing, the worker's pinned probe and FFmpeg's pinned, whitelisted inputs) must open
neither; the unguarded controls show the same files do reach both when nothing stops them.
"""

from __future__ import annotations

import subprocess
import uuid
from io import BytesIO
from pathlib import Path

import av
import pytest
from PIL import Image

from apps.operations.enums import FileType, OperationStatus
from apps.operations.models import Operation
from apps.processors.exceptions import FFmpegError, ProbeError
from apps.processors.ffmpeg import input_args, resolve_ffmpeg_binary, run_ffmpeg
from apps.processors.probe import probe_media, safe_input_options
from apps.storage.backend import object_key
from tests.api.conftest import API, upload
from tests.hostile import attacks
from tests.hostile.conftest import Tripwire, everything_kept

pytestmark = pytest.mark.django_db

DISGUISES = ["mp4", "avi", "mkv", "mov", "wav"]
LABELS = {
    "mp4": "an MP4 video",
    "mov": "a QuickTime (MOV) video",
    "avi": "an AVI video",
    "mkv": "a Matroska (MKV) video",
    "wav": "a WAV audio file",
}
DEMUXER_FOR = {"mp4": "mov", "mov": "mov", "avi": "avi", "mkv": "matroska", "wav": "wav"}


def operation_for(extension: str) -> str:
    return "audio_convert" if extension == "wav" else "video_compress"


@pytest.fixture
def targets(storage_root, settings, plant_tripwire, listener):
    """What the attacks point at: another user's stored upload (absolute path), a file next to
    the uploaded one in the upload directory (relative name), and the listener."""
    other_upload = storage_root / object_key(operation_id=uuid.uuid4(), file_type=FileType.INPUT, extension="mp4")
    return {
        "other_upload": plant_tripwire(other_upload),
        "sibling": plant_tripwire(Path(settings.FILE_UPLOAD_TEMP_DIR) / "secret.mp4"),
        "listener": listener,
    }


def make_attack(kind: str, targets: dict) -> bytes:
    other, url = str(targets["other_upload"].path), targets["listener"].url
    if kind == "hls":
        return attacks.hls_playlist(local_target=other, url=url)
    if kind == "ffconcat":
        return attacks.ffconcat_script(sibling="secret.mp4")
    if kind == "concat":
        return attacks.concat_list(absolute_target=other)
    if kind == "sdp":
        return attacks.sdp_session(port=targets["listener"].port)
    raise AssertionError(kind)


def assert_nothing_reached(targets: dict, *, kept: bytes = b"") -> None:
    for name in ("other_upload", "sibling"):
        tripwire = targets[name]
        assert not tripwire.opened, f"the {name} file was opened"
        assert tripwire.marker not in kept
    assert targets["listener"].contacts == []


# --- the controls: the attack files are live -----------------------------------------------------
def test_control_an_unguarded_ffmpeg_follows_an_ffconcat_script_to_the_file_next_to_it(tmp_path, plant_tripwire):
    tripwire = plant_tripwire(tmp_path / "secret.mp4")
    attack = tmp_path / "holiday.mp4"
    attack.write_bytes(attacks.ffconcat_script(sibling="secret.mp4"))

    subprocess.run(
        [resolve_ffmpeg_binary(), "-nostdin", "-i", str(attack), "-f", "null", "-"], capture_output=True, timeout=60
    )

    assert tripwire.opened


def test_control_unguarded_pyav_follows_it_too(tmp_path, plant_tripwire):
    tripwire = plant_tripwire(tmp_path / "secret.mp4")
    attack = tmp_path / "holiday.mp4"
    attack.write_bytes(attacks.ffconcat_script(sibling="secret.mp4"))

    with pytest.raises(av.FFmpegError):
        av.open(str(attack)).close()

    assert tripwire.opened


def test_control_an_unguarded_ffmpeg_follows_a_playlist_to_another_upload(tmp_path, storage_root, plant_tripwire):
    other = plant_tripwire(storage_root / "uploads" / str(uuid.uuid4()) / "input.mp4")
    playlist = tmp_path / "holiday.m3u8"
    playlist.write_bytes(attacks.hls_playlist(local_target=str(other.path), url="http://127.0.0.1:9/x.ts"))

    subprocess.run(
        [resolve_ffmpeg_binary(), "-nostdin", "-i", str(playlist), "-f", "null", "-"], capture_output=True, timeout=60
    )

    assert other.opened


def test_control_the_listener_sees_ffmpeg_connect_to_a_url(listener):
    subprocess.run(
        [resolve_ffmpeg_binary(), "-nostdin", "-rw_timeout", "2000000", "-i", listener.url, "-f", "null", "-"],
        capture_output=True,
        timeout=60,
    )

    assert listener.contacts


def test_control_a_gab2_chunk_in_an_avi_opens_a_nested_demuxer_that_the_whitelist_refuses(tmp_path):
    avi = tmp_path / "film.avi"
    avi.write_bytes(attacks.gab2_avi(frame_jpeg=small_jpeg(), subtitle=attacks.srt_subtitle("nested")))

    def subtitle_codec(options: dict[str, str]) -> str | None:
        with av.open(str(avi), format="avi", options=options) as container:
            context = container.streams.subtitles[0].codec_context
            return context.codec.name if context and context.codec else None

    assert subtitle_codec({}) == "srt"  # the AVI demuxer opened a second demuxer on the chunk
    assert subtitle_codec(safe_input_options("avi")) is None  # ours refuses to


# --- the API refuses them ---------------------------------------------------------------------------
@pytest.mark.parametrize("extension", DISGUISES)
@pytest.mark.parametrize("kind", ["hls", "ffconcat", "concat", "sdp"])
def test_reference_files_disguised_as_media_are_refused_at_upload(client, targets, storage_root, kind, extension):
    response = upload(
        client,
        _file(storage_root, make_attack(kind, targets)),
        operation=operation_for(extension),
        parameters=_parameters(extension),
        name=f"clip.{extension}",
    )

    assert response.status_code == 415, response.content
    assert response.json()["error"]["code"] == "unsupported_media"
    assert Operation.objects.count() == 0
    assert regular_files(storage_root / "uploads") == regular_files(storage_root / "temp") == []
    assert_nothing_reached(targets, kept=response.content + everything_kept(storage_root))


@pytest.mark.parametrize("extension", DISGUISES)
@pytest.mark.parametrize("kind", ["hls", "ffconcat"])
def test_reference_files_behind_a_real_container_signature_are_refused_by_the_pinned_probe(
    client, targets, storage_root, kind, extension
):
    content = attacks.behind_signature(extension, make_attack(kind, targets))

    response = upload(
        client,
        _file(storage_root, content),
        operation=operation_for(extension),
        parameters=_parameters(extension),
        name=f"clip.{extension}",
    )

    assert response.status_code == 415, response.content
    # The demuxer of the sniffed container finds nothing it can use in what follows the signature.
    assert response.json()["error"]["message"] in (
        f"This file looks like {LABELS[extension]} but could not be read; it may be damaged.",
        f"This file holds no {'audio' if extension == 'wav' else 'video'} stream to work on.",
    )
    assert Operation.objects.count() == 0
    assert_nothing_reached(targets, kept=response.content + everything_kept(storage_root))


def test_a_playlist_is_named_in_the_refusal_and_logged_for_operators(client, targets, storage_root, caplog):
    response = upload(
        client, _file(storage_root, make_attack("hls", targets)), operation="video_compress", name="a.mp4"
    )

    assert response.json()["error"]["message"] == (
        "This file is an HLS playlist, not a video; upload the media file itself."
    )
    assert "Upload refused: an HLS playlist" in caplog.text


# --- the worker fails them cleanly, whatever got them stored -------------------------------------
@pytest.mark.parametrize("extension", DISGUISES)
@pytest.mark.parametrize("kind", ["hls", "ffconcat", "concat"])
def test_reference_files_stored_as_inputs_fail_cleanly_in_the_worker(
    targets, storage_root, run_operation, submit, run_worker, media, kind, extension
):
    # As if an older API had accepted it: stored under the disguise's extension, no sniffed container.
    attack = _file(storage_root, make_attack(kind, targets), name=f"attack.{extension}")

    operation = run_operation(operation_for(extension), attack, _parameters(extension), inspect=False)

    assert operation.status == OperationStatus.FAILED
    assert "could not be read" in operation.error_message
    assert_nothing_reached(targets, kept=everything_kept(storage_root))
    # The worker is still there and still works.
    good = submit(
        operation_for(extension),
        media.audio(duration=0.5) if extension == "wav" else media.video(duration=0.5),
        _parameters(extension),
    )
    run_worker()
    good.refresh_from_db()
    assert good.status == OperationStatus.COMPLETED


@pytest.mark.parametrize("extension", DISGUISES)
@pytest.mark.parametrize("kind", ["hls", "ffconcat"])
def test_ffmpeg_inputs_are_pinned_whatever_the_file_holds(targets, tmp_path, kind, extension):
    # The FFmpeg command line itself, without the probe in front of it. The attack sits in the
    # same directory as the tripwire it names.
    attack = targets["sibling"].path.parent / f"input.{extension}"
    attack.write_bytes(make_attack(kind, targets))

    with pytest.raises(FFmpegError) as failure:
        run_ffmpeg([*input_args(attack, demuxer=DEMUXER_FOR[extension]), "-f", "null", "-"], duration=1, timeout=60)

    assert "could not be read" in failure.value.user_message
    assert_nothing_reached(targets)


# --- a playlist inside a real AVI -------------------------------------------------------------------
def test_a_playlist_hidden_in_an_avi_subtitle_is_never_followed(
    client, targets, storage_root, run_worker, django_capture_on_commit_callbacks
):
    playlist = attacks.hls_playlist(local_target=str(targets["other_upload"].path), url=targets["listener"].url)
    avi = attacks.gab2_avi(frame_jpeg=small_jpeg(), subtitle=playlist)

    with django_capture_on_commit_callbacks(execute=True):  # the API queues the job on commit
        response = upload(client, _file(storage_root, avi), operation="video_compress", name="film.avi")

    # It is a real AVI: accepted, probed and processed, the subtitle track dropped.
    assert response.status_code == 201, response.content
    run_worker()
    operation_id = response.json()["data"]["id"]
    operation = client.get(f"{API}/operations/{operation_id}/").json()["data"]
    assert operation["status"] == "completed", operation["error_message"]
    output = storage_root / Operation.objects.get(id=operation_id).files.get(file_type=FileType.OUTPUT).file_path
    assert [stream.kind for stream in probe_media(output, format_name="mov").streams] == ["video"]
    assert_nothing_reached(targets, kept=everything_kept(storage_root))


def test_a_playlist_hidden_in_an_avi_cannot_be_probed_into_a_nested_demuxer(targets, tmp_path):
    avi = tmp_path / "film.avi"
    playlist = attacks.hls_playlist(local_target=str(targets["other_upload"].path), url=targets["listener"].url)
    avi.write_bytes(attacks.gab2_avi(frame_jpeg=small_jpeg(), subtitle=playlist))

    info = probe_media(avi, format_name="avi")

    assert [stream.kind for stream in info.streams] == ["video", "subtitle"]
    assert_nothing_reached(targets)


def test_probing_without_a_pinned_format_still_refuses_playlists_and_scripts(targets, tmp_path):
    for kind in ("hls", "ffconcat"):
        attack = targets["sibling"].path.parent / f"unpinned-{kind}.mp4"
        attack.write_bytes(make_attack(kind, targets))
        with pytest.raises(ProbeError):
            probe_media(attack)
    assert_nothing_reached(targets)


# --- helpers ----------------------------------------------------------------------------------------
def regular_files(directory: Path) -> list[Path]:
    """What was written under ``directory``, besides the planted tripwires."""
    return [path for path in directory.rglob("*") if path.is_file() and path not in Tripwire.planted]


def small_jpeg() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (64, 48), (20, 160, 60)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _file(storage_root: Path, content: bytes, *, name: str = "attack.bin") -> Path:
    directory = storage_root.parent / "attacks"
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    return path


def _parameters(extension: str) -> dict:
    return {"output_format": "mp3"} if extension == "wav" else {}
