"""Small file-system helpers shared by the caches and corpus builders.

Both :mod:`cald_brain.pretrained` (model folders) and the recipes' corpus
generators build a folder in a temporary sibling, write a JSON completion
marker last and move it into place; leftovers of killed builds are
recognised by the builder's process id.

Authors
 * cald-brain developers 2026
"""

import json
import os


def pid_alive(pid):
    """Whether a process of this id runs on this host (this process included).

    Arguments
    ---------
    pid : int

    Returns
    -------
    bool

    Example
    -------
    >>> pid_alive(os.getpid())
    True
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def read_json_marker(path):
    """The JSON object of a completion marker, or None when absent or unreadable.

    Arguments
    ---------
    path : str or os.PathLike

    Returns
    -------
    dict or None

    Example
    -------
    >>> read_json_marker("no/such/marker.json") is None
    True
    """
    try:
        with open(path, encoding="utf-8") as fin:
            marker = json.load(fin)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None
