"""``python -m ryu_apps.signalling.gateway``: the standalone SIP <-> H.323 gateway."""

import sys

from .standalone import main

sys.exit(main())
