"""``python -m flowbus``: the same as the ``flowbus`` command."""

from flowbus.cli import main

main()
