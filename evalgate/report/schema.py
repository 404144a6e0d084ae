"""The JSON Schema of `evalgate.json`, for tools that read results without evalgate.

Generated from the pydantic models so it cannot disagree with what `read_result` accepts;
`python -m evalgate.report.schema > schemas/evalgate-result.schema.json` refreshes the committed
copy, and a test fails when the two drift apart.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from evalgate.results import SCHEMA_VERSION, RunResult

SCHEMA_ID = f"urn:evalgate:schema:result:v{SCHEMA_VERSION}"


def result_schema() -> dict[str, Any]:
    """The run result's JSON Schema (draft 2020-12), tagged with the result schema version."""
    body = RunResult.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **body,
        "title": "evalgate run result",
        "description": "reports/evalgate.json as written by evalgate (schema_version "
                       f"{SCHEMA_VERSION}): every call, its grade, the metrics and the verdicts.",
        "version": SCHEMA_VERSION,
    }


def schema_text() -> str:
    """The committed file's exact text (stable key order, trailing newline)."""
    return json.dumps(result_schema(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
