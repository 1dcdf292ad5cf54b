"""JSON Schema of the pathway, library and terminology formats, generated from the models."""

from __future__ import annotations

import json
from typing import Any

from engine.model import Library, Pathway
from engine.terminology import TerminologyFile


def pathway_schema() -> dict[str, Any]:
    """One schema accepting a pathway, a library or a terminology file (editors use it)."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://eras-engine.org/schema/pathway.schema.json",
        "title": "ERAS pathway engine files",
        "anyOf": [{"$ref": "#/$defs/Pathway"}, {"$ref": "#/$defs/Library"},
                  {"$ref": "#/$defs/TerminologyFile"}],
        "$defs": {},
    }
    for model in (Pathway, Library, TerminologyFile):
        part = model.model_json_schema(ref_template="#/$defs/{model}")
        schema["$defs"].update(part.pop("$defs", {}))
        schema["$defs"][model.__name__] = part
    return schema


def render() -> str:
    return json.dumps(pathway_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
