"""``python -m fastsoftmax._viz viz|show ...``: the two subcommands on their own."""

import sys

from .cli import main

sys.exit(main())
