"""``python -m ryu_apps.signalling.sip``: the standalone proxy (see :mod:`.command`)."""

import sys

from .command import main

sys.exit(main())
