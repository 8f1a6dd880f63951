"""``python -m service [--index DIR] [--host H] [--port P]``: run the HTTP service."""

import sys

from service.cli import main

sys.exit(main())
