from contextlib import contextmanager

import pytest

from tests.processes import free_port
from tests.ui.data import make_store

ANY = "(any)"
# The Curate tab's filter values with nothing set: source, tag, labeler, strategy, then the bounds and flags.
NO_FILTER = [ANY, ANY, ANY, ANY, "", "", "", "", "", False, False]


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
