"""Parameters validated against the registry's JSON Schema, defaults filled, errors per field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from apps.core.exceptions import ValidationFailed
from apps.processors.parameters import validate_parameters
from apps.processors.registry import OPERATIONS, OperationDefinition, get_operation


def errors_for(name: str | OperationDefinition, raw) -> dict[str, list[str]]:
    definition = get_operation(name) if isinstance(name, str) else name
    with pytest.raises(ValidationFailed) as caught:
        validate_parameters(definition, raw)
    return caught.value.details


def taking(properties: dict[str, Any] | None = None, **schema: Any) -> OperationDefinition:
    """An operation of a kind the registry does not offer yet, with these parameters."""
    schema = {"type": "object", "additionalProperties": False, **schema}
    if properties is not None:
        schema["properties"] = properties
    return dataclasses.replace(get_operation("image_resize"), name="image_future", parameters_schema=schema)


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


def test_unknown_keys_are_rejected_by_name_with_the_accepted_ones_listed():
    details = errors_for("video_compress", {"quality": 23, "vf": "scale=1:1", "crf": 1})
    assert details == {
        "crf": ["Unknown parameter. Accepted parameters: audio_bitrate, max_height, preset, quality, target_size_mb."],
        "vf": ["Unknown parameter. Accepted parameters: audio_bitrate, max_height, preset, quality, target_size_mb."],
    }


def test_out_of_range_and_wrong_types():
    details = errors_for("video_compress", {"quality": 40, "preset": 7})
    assert details["quality"] == ["Must be at most 28."]
    assert details["preset"] == ["Must be of type string."]
    assert errors_for("image_convert", {"output_format": "png", "quality": 0})["quality"] == ["Must be at least 1."]
    assert errors_for("image_resize", {"width": 10, "maintain_aspect_ratio": "yes"})["maintain_aspect_ratio"] == [
        "Must be of type boolean (true or false)."
    ]
    assert errors_for("image_resize", {"width": "10"})["width"] == ["Must be of type integer."]


def test_enum_lists_the_choices():
    details = errors_for("audio_convert", {"output_format": "wma"})
    assert "mp3" in details["output_format"][0]
    assert errors_for("audio_convert", {"output_format": "mp3", "channels": 6}) == {
        "channels": ["Must be one of: 1, 2."]
    }


def test_required_parameters():
    assert errors_for("video_convert", {})["output_format"] == ["This parameter is required."]


def test_resize_needs_a_width_or_height():
    details = errors_for("image_resize", {"maintain_aspect_ratio": False})
    assert details == {"width": ["Give at least one of: width, height."]}


def test_parameters_must_be_an_object_and_the_error_shows_one():
    with pytest.raises(ValidationFailed) as caught:
        validate_parameters(get_operation("video_compress"), ["quality", 23])

    assert caught.value.message == "Parameters must be a JSON object."
    assert caught.value.details == {"parameters": ['Expected a JSON object such as {"quality": 23}.']}


def test_invalid_parameters_are_refused_with_one_sentence_and_the_details_per_field():
    with pytest.raises(ValidationFailed) as caught:
        validate_parameters(get_operation("video_compress"), {"quality": 40})

    assert caught.value.message == "Some parameters are not valid."
    assert caught.value.details == {"quality": ["Must be at most 28."]}


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


# --- operations the registry may offer later: the validator works from any JSON Schema ------------
def test_an_operation_without_parameters_accepts_none_and_refuses_any():
    definition = taking()

    assert validate_parameters(definition, {}) == {}
    assert list(errors_for(definition, {"quality": 23})) == ["quality"]


def test_a_number_parameter_names_its_type():
    definition = taking({"speed": {"type": "number", "minimum": 0.25, "maximum": 4}})

    assert validate_parameters(definition, {"speed": 1.5}) == {"speed": 1.5}
    assert errors_for(definition, {"speed": "fast"}) == {"speed": ["Must be of type number."]}


def test_a_parameter_of_several_types_names_each():
    definition = taking({"deinterlace": {"type": ["boolean", "null"]}})

    assert validate_parameters(definition, {"deinterlace": None}) == {"deinterlace": None}
    assert errors_for(definition, {"deinterlace": "auto"}) == {
        "deinterlace": ["Must be of type boolean (true or false) or null."]
    }


def test_a_parameter_of_several_shapes_is_reported_under_its_own_name():
    definition = taking({"size": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["auto"]}]}})

    assert validate_parameters(definition, {"size": "auto"}) == {"size": "auto"}
    details = errors_for(definition, {"size": 1.5})
    assert list(details) == ["size"] and len(details["size"]) == 1


def test_a_rule_no_sentence_is_written_for_is_still_reported_under_its_field():
    definition = taking({"title": {"type": "string", "maxLength": 10}})

    details = errors_for(definition, {"title": "a title far too long"})

    assert list(details) == ["title"] and len(details["title"]) == 1


def test_a_rule_about_the_parameters_together_is_reported_under_parameters():
    definition = taking({"x": {"type": "integer"}, "y": {"type": "integer"}}, dependentRequired={"x": ["y"]})

    assert validate_parameters(definition, {"x": 1, "y": 2}) == {"x": 1, "y": 2}
    details = errors_for(definition, {"x": 1})
    assert list(details) == ["parameters"] and len(details["parameters"]) == 1


def test_a_type_without_a_plainer_name_is_named_as_json_schema_names_it():
    definition = taking({"crop": {"type": "array", "items": {"type": "integer"}}})

    assert validate_parameters(definition, {"crop": [0, 0, 8, 8]}) == {"crop": [0, 0, 8, 8]}
    assert errors_for(definition, {"crop": "0,0,8,8"}) == {"crop": ["Must be of type array."]}
