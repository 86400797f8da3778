"""``python -m tgd.repro COMMAND ...``: the ``tgd`` command line with the reproduction's
commands, also from a checkout that is not installed (``PYTHONPATH=src``), where the
``tgd.commands`` entry point that registers them does not exist."""

import sys

from tgd.cli import main
from tgd.repro.commands import COMMANDS

sys.exit(main(extra=COMMANDS))
