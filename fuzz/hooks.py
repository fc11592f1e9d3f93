"""Schemathesis checks of this API, beyond "no 5xx": every answer is the JSON envelope."""

import schemathesis


@schemathesis.check
def enveloped(ctx, response, case):
    """Every answer is {"code": int, "msg": str, ...}: clients read `code`, never the status."""
    try:
        body = response.json()
    except Exception:
        raise AssertionError(f"not JSON: {response.text[:200]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("code"), int) or not isinstance(body.get("msg"), str):
        raise AssertionError(f"not the envelope: {response.text[:200]!r}")
    if body["code"] == 500:
        raise AssertionError(f"a system error: {response.text[:200]!r}")
