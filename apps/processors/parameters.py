"""Validating an operation's parameters against its JSON Schema from the registry."""

from __future__ import annotations

import copy
import math
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from apps.core.exceptions import ValidationFailed
from apps.processors.registry import OperationDefinition


def validate_parameters(definition: OperationDefinition, raw: Any) -> dict[str, Any]:
    """The parameters with defaults filled in, or ``ValidationFailed`` with messages per field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValidationFailed(
            "Parameters must be a JSON object.",
            details={"parameters": ['Expected a JSON object such as {"quality": 23}.']},
        )
    _check_shape(raw)
    schema = definition.parameters_schema
    parameters = copy.deepcopy(raw)
    for name, property_schema in schema.get("properties", {}).items():
        if name not in parameters and "default" in property_schema:
            parameters[name] = copy.deepcopy(property_schema["default"])

    errors: dict[str, list[str]] = {}
    for error in sorted(Draft202012Validator(schema).iter_errors(parameters), key=lambda e: list(e.path)):
        for field_name, message in _describe(error, schema):
            errors.setdefault(field_name, []).append(message)
    for field_name, messages in errors.items():
        # A value of the wrong type also fails its enum or range; the type is the useful message.
        type_errors = [message for message in messages if message.startswith("Must be of type")]
        if type_errors:
            errors[field_name] = type_errors
    if errors:
        raise ValidationFailed("Some parameters are not valid.", details=errors)
    return _whole_numbers_as_integers(parameters, schema)


# Operations take flat parameters; nesting this deep is never a real request, and refusing it
# before anything recurses (deepcopy, the schema validator) keeps a RecursionError out.
MAX_DEPTH = 16
_INVALID_TEXT = (
    "Text in the parameters must be valid Unicode; it holds a lone surrogate (an unpaired \\uD800-\\uDFFF escape)."
)


def _check_shape(raw: Any) -> None:
    """Refuse, without recursion, what no schema can describe and no response could echo safely:
    deep nesting, lone surrogates (they cannot be encoded as UTF-8 when the 400 is rendered) and
    numbers that are not finite."""
    pending: list[tuple[Any, int]] = [(raw, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            _check_depth(depth)
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list | tuple):
            _check_depth(depth)
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValidationFailed(
                "Some parameters are not valid.", details={"parameters": ["Numbers must be finite."]}
            )


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValidationFailed(
            "Some parameters are not valid.",
            details={"parameters": [f"The parameters are nested too deeply (more than {MAX_DEPTH} levels)."]},
        )


def _check_text(text: Any) -> None:
    if not isinstance(text, str):
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationFailed("Some parameters are not valid.", details={"parameters": [_INVALID_TEXT]}) from e


def _whole_numbers_as_integers(parameters: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 8.0 as an integer, and so accepts it; the processors need an ``int``."""
    properties = schema.get("properties", {})
    return {
        name: int(value)
        if isinstance(value, float) and value.is_integer() and properties.get(name, {}).get("type") == "integer"
        else value
        for name, value in parameters.items()
    }


def _describe(error: SchemaError, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Turn one schema error into (field, sentence) pairs a person can act on."""
    field_name = str(error.path[0]) if error.path else ""
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        unknown = sorted(set(error.instance) - set(schema.get("properties", {})))
        return [(name, f"Unknown parameter. Accepted parameters: {allowed}.") for name in unknown]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [(name, "This parameter is required.") for name in missing]
    if error.validator == "anyOf" and not error.path:
        names = [sorted(option.get("required", []))[0] for option in error.validator_value if option.get("required")]
        return [(names[0], f"Give at least one of: {', '.join(names)}.")]
    if error.validator == "not" and not error.path and error.validator_value.get("required"):
        names = sorted(error.validator_value["required"])
        return [(name, f"Give only one of: {', '.join(names)}.") for name in names]
    if error.validator == "type":
        return [(field_name, f"Must be of type {_type_name(error.validator_value)}.")]
    if error.validator == "enum":
        choices = ", ".join(str(choice) for choice in error.validator_value)
        return [(field_name, f"Must be one of: {choices}.")]
    if error.validator == "minimum":
        return [(field_name, f"Must be at least {error.validator_value}.")]
    if error.validator == "maximum":
        return [(field_name, f"Must be at most {error.validator_value}.")]
    return [(field_name or "parameters", error.message)]


def _type_name(json_type: str | list[str]) -> str:
    names = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean (true or false)"}
    if isinstance(json_type, list):
        return " or ".join(names.get(t, t) for t in json_type)
    return names.get(json_type, json_type)
