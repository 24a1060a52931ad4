"""One loopback rule for `workbench serve` and `workbench ui` (issue 21, item 4): they used to disagree on
`[::1]` (the server refused it without a key, the app served it without a login)."""

from __future__ import annotations

import pytest

from ui.exposure import check_exposure
from workbench.errors import WorkbenchError
from workbench.runtime.loopback import is_loopback
from workbench.serving.config import ServeConfig

HOSTS = {"127.0.0.1": True, "127.0.0.2": True, "localhost": True, "::1": True, "[::1]": True,
         "0.0.0.0": False, "::": False, "[::]": False, "192.168.1.5": False, "example.com": False, "": False}


@pytest.mark.parametrize("host, loopback", HOSTS.items())
def test_the_server_and_the_app_refuse_the_same_hosts_without_a_key(host, loopback):
    assert is_loopback(host) is loopback
    refused = []
    for check, error in ((lambda: ServeConfig(host=host).validate(None), WorkbenchError),
                         (lambda: check_exposure(host, None), ValueError)):
        try:
            check()
            refused.append(False)
        except error:
            refused.append(True)
    assert refused == [not loopback, not loopback]
