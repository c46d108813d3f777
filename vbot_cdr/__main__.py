"""``python -m vbot_cdr``: the ``vbot-cdr`` command line."""

from vbot_cdr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
