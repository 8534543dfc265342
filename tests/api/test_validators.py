"""What POST /operations/ checks before it looks inside a file: the Idempotency-Key header, the
extension the operation takes and the size it accepts, each refused with a sentence a person can
act on (apps/api/validators.py)."""

from __future__ import annotations

import pytest

from apps.operations.models import Operation
from apps.processors.registry import get_operation
from tests.api.conftest import stored_files, upload

pytestmark = pytest.mark.django_db

BAD_KEY = "The Idempotency-Key header is not valid."
BAD_KEY_DETAIL = "Use up to 255 printable ASCII characters without spaces, for example a UUID."


def upload_png(client, media, **options):
    return upload(client, media.png(), operation="image_resize", parameters={"width": 8}, **options)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


# --- Idempotency-Key ------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["k" * 255, "!~", "4f9c2d1e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"])
def test_a_key_of_up_to_255_printable_characters_is_accepted(client, media, key):
    first = upload_png(client, media, headers={"Idempotency-Key": key})
    again = upload_png(client, media, headers={"Idempotency-Key": key})

    assert (first.status_code, again.status_code) == (201, 200)
    assert Operation.objects.get().idempotency_key == key


@pytest.mark.parametrize("key", ["k" * 256, "two words", "clé", "tab\there", "bell\x7f"])
def test_a_key_too_long_or_not_printable_ascii_is_refused_and_nothing_is_kept(client, media, storage_root, key):
    error = error_of(upload_png(client, media, headers={"Idempotency-Key": key}), 400)

    assert (error["code"], error["message"]) == ("validation_error", BAD_KEY)
    assert error["details"] == {"Idempotency-Key": [BAD_KEY_DETAIL]}
    assert not Operation.objects.exists()
    assert stored_files(storage_root) == []


def test_a_key_is_read_without_the_spaces_around_it(client, media):
    first = upload_png(client, media, headers={"Idempotency-Key": "  upload-7f3a  "})
    again = upload_png(client, media, headers={"Idempotency-Key": "upload-7f3a"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert Operation.objects.get().idempotency_key == "upload-7f3a"


@pytest.mark.parametrize("key", ["", "   "])
def test_a_blank_key_counts_as_no_key(client, media, key):
    first = upload_png(client, media, headers={"Idempotency-Key": key})
    second = upload_png(client, media, headers={"Idempotency-Key": key})

    assert (first.status_code, second.status_code) == (201, 201)
    assert list(Operation.objects.values_list("idempotency_key", flat=True)) == [None, None]


# --- the extension --------------------------------------------------------------------------------
def test_an_extension_the_operation_does_not_take_is_a_415_naming_those_it_takes(client, media, storage_root):
    response = upload(client, media.png(), operation="audio_convert", parameters={"output_format": "mp3"})

    accepted = ", ".join(get_operation("audio_convert").input_formats)
    message = f".png files are not accepted by audio_convert. Accepted formats: {accepted}."
    error = error_of(response, 415)
    assert (error["code"], error["message"], error["details"]) == ("unsupported_media", message, {"file": [message]})
    assert stored_files(storage_root) == []


def test_a_file_without_an_extension_is_a_415_that_says_so(client, media):
    response = upload(client, media.png(), operation="image_resize", parameters={"width": 8}, name="holiday")

    accepted = ", ".join(get_operation("image_resize").input_formats)
    message = f"Files without an extension are not accepted by image_resize. Accepted formats: {accepted}."
    assert error_of(response, 415)["message"] == message


def test_an_extension_is_taken_whatever_its_case(client, media):
    response = upload(client, media.png(), operation="image_resize", parameters={"width": 8}, name="HOLIDAY.PNG")

    assert response.status_code == 201


# --- the size -------------------------------------------------------------------------------------
def test_a_file_exactly_at_the_operations_limit_is_accepted(client, media, settings):
    png = media.png()
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": png.stat().st_size}

    assert upload(client, png, operation="image_resize", parameters={"width": 8}).status_code == 201


def test_a_file_one_byte_over_the_operations_limit_is_a_413_that_names_the_limit(client, media, settings):
    png = media.png()
    limit = png.stat().st_size - 1
    settings.MAX_FILE_SIZE = {**settings.MAX_FILE_SIZE, "image": limit}

    error = error_of(upload(client, png, operation="image_resize", parameters={"width": 8}), 413)

    message = f"The file is larger than the {limit} bytes this operation accepts."
    assert (error["code"], error["message"]) == ("file_too_large", message)
    assert error["details"] == {"file": [message], "max_file_size": limit}
    assert not Operation.objects.exists()


def test_a_file_is_cut_off_while_arriving_at_the_largest_limit_of_the_operations_taking_its_extension(
    client, media, settings, storage_root
):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # received into a temporary file, chunk by chunk
    settings.MAX_FILE_SIZE = {"video": 2_000_000, "image": 20_000, "audio": 1_000_000}
    big_png = media.text(extension="png", content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000)

    # The operation named is a video one, but the file is not received past the image limit.
    error = error_of(upload(client, big_png, operation="video_compress"), 413)

    assert error["message"] == "The file is larger than the 19.5 KB this operation accepts."
    assert error["details"]["max_file_size"] == 20_000
    assert stored_files(storage_root) == []


def test_a_file_of_an_extension_no_operation_takes_is_received_and_then_refused_as_unsupported(client, media, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.MAX_FILE_SIZE = {"video": 2_000_000, "image": 20_000, "audio": 1_000_000}
    archive = media.text(extension="xyz", content=b"\x00" * 300_000)

    error = error_of(upload(client, archive, operation="video_compress"), 415)

    assert error["message"].startswith(".xyz files are not accepted by video_compress.")


def test_a_request_larger_than_every_limit_is_refused_before_it_is_read(client, media, settings, storage_root):
    settings.MAX_FILE_SIZE = {"video": 3000, "image": 1000, "audio": 2000}
    big = media.text(extension="mp4", content=b"\x00" * (1024 * 1024 + 50_000))

    error = error_of(upload(client, big, operation="video_compress"), 413)

    assert error["message"] == "The file is larger than the 2.9 KB this operation accepts."
    assert error["details"]["max_file_size"] == 3000
    assert stored_files(storage_root) == []
