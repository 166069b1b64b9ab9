"""The README's TypeScript client example is tests/durable_streams/read_stream.mjs, the script
that tests/http/test_durable_streams_client.py runs against the server: they cannot drift apart."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_shows_read_stream_mjs_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "tests" / "durable_streams" / "read_stream.mjs").read_text()
    assert f"```js\n{script}```\n" in readme, "copy tests/durable_streams/read_stream.mjs into README.md's js block"
