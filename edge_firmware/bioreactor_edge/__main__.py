"""`python -m bioreactor_edge` is the `bioreactor-edge` command."""

import sys

from .cli import main

sys.exit(main())
