import socket
from contextlib import contextmanager

import pytest

from tests.ui.data import make_store

ANY = "(any)"
NO_FILTER = [ANY, ANY, ANY, ANY, "", "", "", "", "", False]  # the Curate tab's ten filter values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(store, **kwargs):
    """The app served in this process on a free port; closed (jobs stopped) afterwards."""
    from ui.app import close_app, launch

    demo, url = launch(store, port=free_port(), block=False, quiet=True, **kwargs)
    try:
        yield demo, url
    finally:
        close_app(demo)


@pytest.fixture(scope="module")
def app_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("app"))
