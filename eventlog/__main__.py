"""``python -m eventlog``: the same as the ``eventlog`` command."""

from eventlog.cli import main

main()
