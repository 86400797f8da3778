"""Sub-commands of the ``tgd`` CLI (see ``tgd.cli.COMMANDS``)."""
