"""schemathesis against a real server: its CLI, in a subprocess, generates requests from
``/openapi.json`` and checks every response against the document (status, content type, headers,
body schema, for the SSE routes each event) and that none is a 5xx. Used by the OpenAPI tests and
the fault suite's fuzzing scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from eventlog.http.app import create_app
from eventlog.http.openapi import build_spec
from eventlog.http.settings import Settings

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"


def schemathesis(
    label: str, location: str, tmp_path: Path, *args: str, max_examples: int = 15, seed: int = 1
) -> dict[str, Any]:
    """Run ``schemathesis run`` and return its JSON report; prints one figure line."""
    report = tmp_path / f"schemathesis-{seed}.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", location, "--checks", CHECKS,
        "--max-examples", str(max_examples), "--seed", str(seed), "--request-timeout", "10",
        "--generation-database", "none", "--no-color", "--report", "json", "--report-json-path", str(report), *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its caches stay there
    assert report.exists(), result.stdout + result.stderr
    figures = json.loads(report.read_text())
    operations, cases = figures["operations"], figures["test_cases"]
    print(
        f"schemathesis, {label}: {operations['tested']}/{operations['total']} operations, "
        f"{cases['generated']} examples, {cases['with_failures']} failing ({cases['unique_failures']} unique), "
        f"{len(figures['errors'])} errors"
    )
    assert result.returncode == 0, result.stdout[-6000:]
    # Loaded from the server, schemathesis leaves out the operation that serves the document.
    expected = len(operations_of(spec_of(create_app(Settings())))) - location.startswith("http")
    assert operations["tested"] == operations["total"] == expected
    return figures


def spec_of(app: Any) -> dict[str, Any]:
    return build_spec(app.routes)


def operations_of(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
