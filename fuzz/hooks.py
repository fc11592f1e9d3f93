"""Schemathesis checks of this API, beyond "no 5xx": every answer is the JSON envelope."""

import schemathesis
from schemathesis.core import media_types


def _documented_other_than_json(case, response):
    """True when the document says this status answers without JSON and the answer does:
    the console's files, the metrics, a recording (206), an empty 304 or 416. The
    conformance checks hold those answers to the document; this one is for the envelope."""
    documented = case.operation.schema.get_content_types(case.operation, response)
    received = response.headers.get("content-type", [None])[0]
    if received is None:
        return case.operation.responses.find_by_status_code(response.status_code) is not None and not documented
    return any(
        not media_types.is_json(option) and media_types.matches(option, received) for option in documented
    )


@schemathesis.check
def enveloped(ctx, response, case):
    """Every answer is {"code": int, "msg": str, ...}: clients read `code`, never the status."""
    if _documented_other_than_json(case, response) or case.operation.path == "/api/openapi.json":
        return
    try:
        body = response.json()
    except Exception:
        raise AssertionError(f"not JSON: {response.text[:200]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("code"), int) or not isinstance(body.get("msg"), str):
        raise AssertionError(f"not the envelope: {response.text[:200]!r}")
    if body["code"] == 500:
        raise AssertionError(f"a system error: {response.text[:200]!r}")
