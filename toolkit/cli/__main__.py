"""``python -m toolkit.cli`` runs the ``journal`` command."""

from toolkit.cli.main import main

main()
