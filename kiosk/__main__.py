"""`python -m kiosk` is the same as the `voice-kiosk` command."""

import sys

from kiosk.cli import main

sys.exit(main())
