"""When idle media releases a call (``dataplane.media_idle``).

Each direction of a call has its own ingress flow with an idle timeout; the switch
removes it (and says so) when no packet matched it for ``call_idle_timeout_s``.

* ``both`` (default): a call is released only when neither direction carries media.
  A direction that idles alone (hold, silence suppression, one-way announcements) gets
  its flow back at once, so its media is classified again the moment it resumes; when
  the other direction idles too, the valve reads the first one's packet counter since
  it was put back: zero means both are silent and the call is released (``media-idle``).
* ``either``: the first direction to idle releases the call (the behaviour before).
* ``off``: flows carry no idle timeout; calls end only by signalling (or timers).
"""

from __future__ import annotations

import enum


class MediaIdle(str, enum.Enum):
    BOTH = "both"
    EITHER = "either"
    OFF = "off"
