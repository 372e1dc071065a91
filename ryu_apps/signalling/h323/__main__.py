"""``python -m ryu_apps.signalling.h323``: the standalone gatekeeper (see :mod:`.standalone`)."""

import sys

from .standalone import main

sys.exit(main())
