"""What the OpenAPI document says about the create request, beyond what its serializer can.

``OperationCreateSerializer`` takes ``parameters`` as a string because that is what a multipart
form carries. The document describes what that string holds instead: a JSON object (the part's
content type is ``application/json``, see the view's encoding) whose JSON Schema depends on the
chosen ``operation``. Each operation gets a request variant, ``<Name>CreateRequest``, with
``operation`` fixed to its name and ``parameters`` carrying the registry's schema verbatim; each
preset one, ``<Name>PresetCreateRequest``, with ``preset`` fixed and its operation's parameters
(none required: the preset sets them). The request is ``oneOf`` those variants: a request names
an operation or a preset, never both.

The shared fields stay as plain top-level properties beside the ``oneOf``: form renderers such as
Swagger UI build their fields from those properties and cannot render a multipart body that is
only a ``oneOf`` (the file input turns into a text box).

Registered through drf-spectacular's serializer extension point (imported in ``ApiConfig.ready``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent

from apps.processors.presets import PRESETS, Preset
from apps.processors.registry import OPERATIONS, OperationDefinition

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema
    from drf_spectacular.utils import Direction

# What the form's text parts hold. Said explicitly for ``operation`` too: its schema is a reference
# to a shared enum, and a part whose schema states no type would default to binary.
CREATE_REQUEST_ENCODING = {
    "operation": {"contentType": "text/plain"},
    "preset": {"contentType": "text/plain"},
    "parameters": {"contentType": "application/json"},
}


def variant_component_name(definition: OperationDefinition) -> str:
    """``video_compress`` → ``VideoCompressCreateRequest``."""
    return "".join(word.capitalize() for word in definition.name.split("_")) + "CreateRequest"


def _variant_schema(definition: OperationDefinition) -> dict[str, Any]:
    return {
        "type": "object",
        "title": definition.title,
        "description": definition.description,
        "properties": {
            "operation": {"type": "string", "const": definition.name},
            # A copy: the generator's post-processing edits schemas in place, the registry is shared.
            "parameters": copy.deepcopy(definition.parameters_schema),
        },
        "required": ["operation"],
        "not": {"required": ["preset"]},
    }


def preset_component_name(preset: Preset) -> str:
    """``web-720p`` → ``Web720pPresetCreateRequest``."""
    return "".join(word.capitalize() for word in preset.name.replace("-", "_").split("_")) + "PresetCreateRequest"


def _preset_variant_schema(preset: Preset) -> dict[str, Any]:
    parameters = copy.deepcopy(preset.definition.parameters_schema)
    # The preset gives its own values: what the operation requires may be left out.
    for rule in ("required", "anyOf"):
        parameters.pop(rule, None)
    return {
        "type": "object",
        "title": preset.title,
        "description": f"{preset.description} Runs {preset.operation} with {preset.parameters}.",
        "properties": {"preset": {"type": "string", "const": preset.name}, "parameters": parameters},
        "required": ["preset"],
        "not": {"required": ["operation"]},
    }


class OperationCreateRequestExtension(OpenApiSerializerExtension):
    target_class = "apps.api.serializers.OperationCreateSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema = super().map_serializer(auto_schema, direction)
        properties = schema["properties"]
        properties["operation"] = {
            "type": "string",
            "enum": list(OPERATIONS),
            "description": properties["operation"].get("description", ""),
        }
        properties["parameters"] = {
            "type": "object",
            "description": (
                "The chosen operation's parameters as a JSON object (this part's content is JSON). Each "
                "operation's schema is in its variant of this request (oneOf) and at /operation-definitions/. "
                "Omitted: the defaults."
            ),
        }
        # Raw bytes, which OpenAPI 3.1 describes with a typeless schema (``type: string, format:
        # binary`` was 3.0's way, and a string is text); contentMediaType is what makes Swagger UI
        # offer a file picker.
        properties["file"] = {
            "contentMediaType": "application/octet-stream",
            "description": properties["file"].get("description", ""),
        }
        properties["preset"] = {
            "type": "string",
            "enum": list(PRESETS),
            "description": properties["preset"].get("description", ""),
        }
        variants = [
            (variant_component_name(definition), _variant_schema(definition), definition.name)
            for definition in OPERATIONS.values()
        ] + [
            (preset_component_name(preset), _preset_variant_schema(preset), preset.name) for preset in PRESETS.values()
        ]
        refs = []
        for name, variant, key in variants:
            component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, schema=variant, object=key)
            auto_schema.registry.register_on_missing(component)
            refs.append(component.ref)
        # No discriminator: a request names either its operation or its preset.
        schema["oneOf"] = refs
        return schema
