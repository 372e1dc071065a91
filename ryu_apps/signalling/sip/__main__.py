"""``python -m ryu_apps.signalling.sip``: the standalone proxy (see :mod:`.standalone`)."""

import sys

from .standalone import main

sys.exit(main())
