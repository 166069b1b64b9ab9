"""The Durable Streams protocol (https://github.com/durable-streams/durable-streams) on the log."""
