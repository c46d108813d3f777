"""The fixtures of the command-line tests: no VBOT_* setting leaks in from the machine."""

from tests._cli import clean_environment, hanging, server  # noqa: F401 - fixtures for every test here
