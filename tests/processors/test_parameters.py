"""Parameters validated against the registry's JSON Schema, defaults filled, errors per field."""

from __future__ import annotations

import pytest

from apps.core.exceptions import ValidationFailed
from apps.processors.parameters import validate_parameters
from apps.processors.registry import OPERATIONS, get_operation


def errors_for(name: str, raw) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        validate_parameters(get_operation(name), raw)
    return caught.value.details


def test_defaults_are_filled_in():
    assert validate_parameters(get_operation("video_compress"), {}) == {
        "quality": 23,
        "preset": "medium",
        "audio_bitrate": "128k",
    }
    assert validate_parameters(get_operation("image_resize"), {"width": 100}) == {
        "width": 100,
        "maintain_aspect_ratio": True,
    }
    assert validate_parameters(get_operation("audio_extract"), None) == {"output_format": "mp3", "bitrate": "192k"}


def test_given_values_are_kept():
    parameters = validate_parameters(get_operation("video_compress"), {"quality": 18, "preset": "slow"})
    assert parameters["quality"] == 18
    assert parameters["preset"] == "slow"


def test_unknown_keys_are_rejected_by_name():
    details = errors_for("video_compress", {"quality": 23, "vf": "scale=1:1", "crf": 1})
    assert set(details) == {"vf", "crf"}
    assert "Unknown parameter" in details["vf"][0]


def test_out_of_range_and_wrong_types():
    details = errors_for("video_compress", {"quality": 40, "preset": 7})
    assert details["quality"] == ["Must be at most 28."]
    assert details["preset"] == ["Must be of type string."]
    assert errors_for("image_convert", {"output_format": "png", "quality": 0})["quality"] == ["Must be at least 1."]
    assert (
        "boolean"
        in errors_for("image_resize", {"width": 10, "maintain_aspect_ratio": "yes"})["maintain_aspect_ratio"][0]
    )
    assert errors_for("image_resize", {"width": "10"})["width"] == ["Must be of type integer."]


def test_enum_lists_the_choices():
    details = errors_for("audio_convert", {"output_format": "wma"})
    assert "mp3" in details["output_format"][0]


def test_required_parameters():
    assert errors_for("video_convert", {})["output_format"] == ["This parameter is required."]


def test_resize_needs_a_width_or_height():
    details = errors_for("image_resize", {"maintain_aspect_ratio": False})
    assert "width" in details
    assert "height" in details["width"][0]


def test_parameters_must_be_an_object():
    assert "parameters" in errors_for("video_compress", ["quality", 23])


def test_options_cannot_be_smuggled_into_string_values():
    details = errors_for("video_compress", {"audio_bitrate": "128k -i /etc/passwd"})
    assert "audio_bitrate" in details


def test_every_operation_has_a_valid_schema_and_processor_path():
    from jsonschema import Draft202012Validator

    for definition in OPERATIONS.values():
        Draft202012Validator.check_schema(definition.parameters_schema)
        assert definition.processor.startswith("apps.processors.")
        assert definition.queue in {"video_queue", "image_queue", "audio_queue"}


def test_audio_extract_is_a_video_input_on_the_audio_queue(settings):
    definition = get_operation("audio_extract")
    assert definition.media_type == "video"
    assert definition.queue == "audio_queue"
    assert definition.max_file_size == settings.MAX_FILE_SIZE["video"]
    assert definition.timeout == 300
