"""The OpenAPI 3.1 description of this API: ``openapi.json`` beside this module, written by hand and served as is.

``tests/api/test_openapi.py`` holds it to the code: a valid OpenAPI 3.1 document, every
route and method of the blueprint in it and nothing else, the error codes those of
``app/errors.py``, the roles those the views require, and what the views answer valid
against its schemas (docs/rest-api.md says why it is not generated).
"""

import functools
import json
from pathlib import Path

from flask import current_app

from app.api import bp

DOCUMENT_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def document_bytes():
    """The document as it is on disk, read once per process."""
    return DOCUMENT_PATH.read_bytes()


@functools.cache
def document():
    """The document, parsed (for the explorer page); do not modify it."""
    return json.loads(document_bytes())


@bp.get("/openapi.json")
def openapi_document():
    """This API's OpenAPI 3.1 document; no token needed."""
    return current_app.response_class(document_bytes(), mimetype="application/json")


def operations():
    """Every operation of the document, in its order, as plain dicts for the explorer page.

    Each is ``{tag, method, path, summary, description, roles, request, answers}``; ``request``
    names the request body's schema (or None) and ``answers`` is ``[(status, description, codes)]``.
    """
    doc = document()
    result = []
    for path, item in doc["paths"].items():
        for method in ("get", "put", "post", "patch", "delete"):
            if method not in item:
                continue
            spec = item[method]
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            answers = []
            for status, response in spec["responses"].items():
                response = _resolve(doc, response)
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                codes = schema.get("properties", {}).get("code", {}).get("enum", [])
                answers.append((status, response["description"], codes))
            result.append(
                {
                    "tag": spec["tags"][0],
                    "method": method.upper(),
                    "path": doc["servers"][0]["url"] + path,
                    "summary": spec["summary"],
                    "description": spec.get("description", ""),
                    "roles": spec["x-roles"],
                    "public": spec.get("security") == [],
                    "request": body.get("$ref", "").rpartition("/")[2] or None,
                    "answers": answers,
                }
            )
    return result


def _resolve(doc, node):
    """``node``, or the component its local ``$ref`` names."""
    while "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node
