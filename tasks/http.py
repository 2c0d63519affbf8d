"""The one HTTP session factory: every request podflow makes carries the same user agent and limits."""

import requests

from tasks.models import Settings

MAX_REDIRECTS = 10


def new_session(settings: Settings) -> requests.Session:
    """A requests session with podflow's user agent and a bounded redirect chain."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.max_redirects = MAX_REDIRECTS
    return session
