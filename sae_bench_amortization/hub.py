"""Hugging Face hub access that fails fast offline.

Without a network, huggingface_hub retries each request for about half a minute and logs every try.
:func:`hub_access` looks the hub's host name up once (DNS only, no connection); when it does not
resolve, the HF libraries are switched to offline mode for the call, so they read their local cache
or fail at once, quietly.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

OFFLINE_HINT = "the Hugging Face hub cannot be reached and it is not in the local cache"


def cache_folder() -> str:
    """The Hugging Face hub cache the libraries read (``HF_HUB_CACHE``, by default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host name resolves (a DNS lookup only) and offline mode is not set."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


@contextmanager
def hub_access() -> Iterator[bool]:
    """Yield whether the hub is reachable; inside, HF libraries are offline (cache only) when it is not."""
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hf_logging

    online = hub_reachable()
    datasets_config = sys.modules.get("datasets.config")
    saved = (constants.HF_HUB_OFFLINE, getattr(datasets_config, "HF_HUB_OFFLINE", None))
    verbosity = hf_logging.get_verbosity()
    if not online:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 - a module flag the stubs do not declare
        if datasets_config is not None:
            setattr(datasets_config, "HF_HUB_OFFLINE", True)  # noqa: B010 - as above
    hf_logging.set_verbosity_error()
    try:
        yield online
    finally:
        setattr(constants, "HF_HUB_OFFLINE", saved[0])  # noqa: B010
        if datasets_config is not None:
            setattr(datasets_config, "HF_HUB_OFFLINE", saved[1])  # noqa: B010
        hf_logging.set_verbosity(verbosity)
