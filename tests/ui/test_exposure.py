"""Who can reach the app: a wide --host needs a login, an empty login is refused, a request for
another host name (DNS rebinding) is refused when there is no login, and bad export names get
their real reason."""

import http.client
import urllib.parse

import pytest
from click.testing import CliRunner
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.ui.conftest import NO_FILTER, running_app
from tests.ui.data import make_store
from ui.app import launch
from ui.exposure import check_exposure
from cli import load_commands
from workbench.curate.curation import safe_export_path
from workbench.errors import WorkbenchError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("exposure"), prompts=3)


def _ui(tmp_path, *args, env=None):
    return CliRunner().invoke(load_commands(), ["--db", str(tmp_path / "t.duckdb"), "ui", *args], env=env)


def test_a_wide_host_without_auth_is_refused(tmp_path):
    for host in ("0.0.0.0", "192.168.1.5", "::", "myhost.example"):
        result = _ui(tmp_path, "--host", host, env={"WORKBENCH_UI_AUTH": None})
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"listening on {host} would let anyone" in result.output and "add --auth USER:PASS" in result.output
    demo = CliRunner().invoke(load_commands(), ["--db", str(tmp_path / "d.duckdb"), "demo", "--host", "0.0.0.0",
                                                "--work-dir", str(tmp_path / "demo")])
    assert demo.exit_code == 2 and "serves on loopback only" in demo.output and not (tmp_path / "demo").exists()
    with pytest.raises(ValueError, match="add --auth"):
        launch(None, host="0.0.0.0", block=False)  # refused before anything is built or bound
    check_exposure("0.0.0.0", "alice:s3cret")
    for loopback in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(loopback, None)


def test_an_empty_login_is_refused_not_taken_for_none(tmp_path):
    result = _ui(tmp_path, env={"WORKBENCH_UI_AUTH": ""})
    assert result.exit_code == 2 and "WORKBENCH_UI_AUTH is set but empty" in result.output
    result = _ui(tmp_path, "--auth", "", env={"WORKBENCH_UI_AUTH": None})
    assert result.exit_code == 2 and "USER:PASS" in result.output
    result = _ui(tmp_path, "--host", "0.0.0.0", env={"WORKBENCH_UI_AUTH": ""})
    assert result.exit_code == 2 and "Traceback" not in result.output


def _get(url: str, host_header: str) -> int:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", "/config", headers={"Host": host_header})
        return connection.getresponse().status
    finally:
        connection.close()


def test_requests_for_another_host_name_are_refused_without_auth(store):
    with running_app(store) as (_, url):
        port = urllib.parse.urlsplit(url).port
        assert _get(url, f"127.0.0.1:{port}") == 200 and _get(url, f"localhost:{port}") == 200
        for rebound in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
            assert _get(url, rebound) == 400
    with running_app(store, auth="alice:s3cret") as (_, url):
        assert _get(url, "attacker.example") == 401  # the login guards it; no Host check needed


@pytest.mark.parametrize("name,reason", [
    (".", "'.' names no file"), ("./", "names no file"), (" . ", "names no file"), ("a/..", "'..' is not allowed"),
    ("a\nb", "control character"), ("x" * 300, "at most 200 bytes"), ("/etc/x", "not an absolute path"),
])
def test_bad_export_names_give_the_real_reason(tmp_path, name, reason):
    with pytest.raises(WorkbenchError, match=reason):
        safe_export_path(tmp_path, name, "jsonl")


def test_export_named_dot_over_the_api(store):
    with running_app(store) as (demo, url):
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="'.' names no file: give a file name"):
            client.predict(".", "jsonl", "trl", False, False, *NO_FILTER, api_name="/export")
        assert list(demo.workbench.export_dir.iterdir()) == []
