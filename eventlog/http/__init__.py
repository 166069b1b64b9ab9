"""The HTTP transport: a Starlette app serving runs over JSON and Server-Sent Events.

It calls only the ``EventLog`` API: no SQL, no storage types."""
