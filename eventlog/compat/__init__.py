"""Adapters that let other systems use eventlog through the interfaces they already speak.

``eventlog.compat.deerflow``: ``SQLiteStreamBridge``, a drop-in, durable stream bridge for agent
gateways of the DeerFlow / LangGraph Platform kind. Adapters only call the ``EventLog`` API.
"""
