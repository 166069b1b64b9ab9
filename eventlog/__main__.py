"""The ``eventlog`` command (also ``python -m eventlog``).

The library installs without the command line's dependencies (they come with the ``server``
extra), so a bare install says in one line what is missing instead of a traceback."""

import sys


def main() -> None:
    try:
        from eventlog.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "eventlog":
            raise  # a broken install of eventlog itself, not a missing extra
        sys.exit(
            f"eventlog: the command line needs the server extra ({exc.name} is not installed): "
            "pip install 'eventlog[server]'"
        )
    cli_main()


if __name__ == "__main__":
    main()
