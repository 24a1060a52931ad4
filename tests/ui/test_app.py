"""The app without a browser: building, launching safely, the API endpoints, error translation."""

import json
import urllib.error
import urllib.parse
import urllib.request

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.ui.conftest import NO_FILTER, running_app
from tests.ui.test_waterfall import chart_numbers
from ui import render
from ui.app import build_app, parse_auth
from ui.errors import user_errors
from ui.inputs import number, or_none
from workbench.curate.browse import prompt_detail, prompt_page, PromptQuery
from workbench.errors import NotFound, StoreBusy, WorkbenchError
from workbench.exports.export import count_pairs
from workbench.curate.pair_filter import PairFilter


def test_build_app_only_builds(app_store, tmp_path):
    demo = build_app(app_store, export_dir=tmp_path / "e", runs_dir=tmp_path / "r")
    assert isinstance(demo, gr.Blocks) and not demo.is_running
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert {"browse_page", "prompt_detail", "curate_preview", "export", "sample_start", "train_start"} <= names
    assert demo.workbench.export_dir == (tmp_path / "e").resolve() and (tmp_path / "r").is_dir()


def test_parse_auth():
    assert parse_auth(None) is None
    assert parse_auth("alice:s3:cret") == ("alice", "s3:cret")
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)


def test_inputs():
    assert [or_none(v) for v in ("(any)", "", "  ", None, "x", 0)] == [None, None, None, None, "x", 0]
    assert number("", "m") is None and number(" 1.5 ", "m") == 1.5 and number("3", "n", integer=True) == 3
    for text, message in (("abc", "must be a number"), ("nan", "finite"), ("2.5", "whole number")):
        with pytest.raises(WorkbenchError, match=message):
            number(text, "Length", integer=True)


def test_user_errors_become_one_line_messages():
    def raiser(error):
        @user_errors
        def callback():
            raise error
        return callback

    with pytest.raises(gr.Error) as caught:
        raiser(NotFound("prompt x is not\n in the store"))()
    assert caught.value.message == "prompt x is not in the store"
    with pytest.raises(gr.Error, match="The store is busy"):
        raiser(StoreBusy("locked"))()
    with pytest.raises(gr.Error) as caught:
        raiser(KeyError("secret internals"))()
    assert "Internal error (KeyError)" in caught.value.message and "secret" not in caught.value.message


def test_stored_text_is_escaped_in_the_detail_view(app_store):
    page = prompt_page(app_store, PromptQuery(search="markup"))
    html = render.prompt_detail(prompt_detail(app_store, page.rows["prompt_id"][0]))
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;reply&#x27;)&lt;/script&gt;" in html.replace("'", "&#x27;")
    assert "&lt;b&gt;markup&lt;/b&gt;" in html and "★ BoN pick (ext@1)" in html


def test_replies_render_as_markdown_and_stay_inert():
    """Code in a reply shows as a code block, not as "```python" in running text; HTML in a reply
    stays text; links and images are not made (a stored reply must not fetch or point anywhere)."""
    html = render.reply_html("Here:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n- one\n- two\n"
                             "<img src=x onerror=alert(1)> <script>alert(2)</script>\n\n"
                             "[click](javascript:alert(3)) ![pic](http://example.com/t.png) <http://example.com>")
    assert '<pre><code class="language-python">def add(a, b):\n    return a + b\n</code></pre>' in html
    assert "```" not in html and "<li>one</li>" in html
    assert "<img" not in html and "<script" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<a " not in html and "href" not in html and "src=" not in html.replace("&lt;img src=x", "")


def test_endpoints_over_http(app_store):
    with running_app(app_store) as (demo, url):
        assert url.startswith("http://127.0.0.1:") and not demo.share
        client = Client(url, verbose=False)
        table, page, caption = client.predict("topic 1", "(any)", "(any)", "text", 1, api_name="/browse_page")
        assert caption.startswith("Page 1 of 1") and all("topic 1" in row[0] for row in table["data"])
        html = client.predict(table["data"][0][-1], api_name="/prompt_detail")
        assert "BoN pick" in html
        filters = NO_FILTER.copy()
        filters[4] = "2"  # minimum margin
        count, _, preview = client.predict(*filters, api_name="/curate_preview")
        expected = count_pairs(app_store, PairFilter(min_margin=2.0))
        assert count == f"### {expected:,} pairs would be exported" and len(preview["data"]) == min(expected, 20)
        result, download, manifest = client.predict("api-test", "jsonl", "trl", False, False, *filters,
                                                     api_name="/export")
        exported = demo.workbench.export_dir / "api-test.jsonl"
        assert len(exported.read_text().splitlines()) == expected == json.loads(manifest["value"])["rows"]
        assert f"Wrote **{expected:,} pairs**" in result and download["label"] == "Download api-test.jsonl"
        # the built tab's waterfall (it follows the count) draws the numbers that export's manifest records
        chart = chart_numbers(client.predict(*filters, "trl", api_name="/curate_waterfall"))
        recorded = json.loads(manifest["value"])["why_dropped"]
        assert chart["exported"] == expected and chart["store"] == recorded["pairs_in_store"]
        assert list(chart["steps"].items()) == [(s["step"], s["removed"]) for s in recorded["steps"][:-1]]
        with pytest.raises(AppError, match="'..' is not allowed"):
            client.predict("../escape", "jsonl", "trl", False, False, *filters, api_name="/export")
        # an invalid bound: the count says so (the last valid count must not stay) and the tables empty
        count, breakdown, preview = client.predict(*[*NO_FILTER[:4], "1; DROP TABLE pairs", *NO_FILTER[5:]],
                                                   api_name="/curate_preview")
        assert "fix the filter" in count and "Minimum margin must be a number" in count
        assert breakdown["data"] in ([], [[None] * 3]) and preview["data"] in ([], [[None] * 8])
        with pytest.raises(AppError, match="not in the store"):
            client.predict("0" * 32, api_name="/prompt_detail")
        _sft_count_is_what_the_export_writes(client, demo, app_store)


def _sft_count_is_what_the_export_writes(client, demo, app_store):
    """With the sft schema and no reward model under "Labelled by", the count says to pick one
    (the SFT count itself: tests/ui/test_tab_steps.py)."""
    count, _, preview = client.predict(*NO_FILTER, "sft", api_name="/curate_preview")
    assert "Pick a reward model under “Labelled by”" in count and preview["headers"][:2] == ["prompt", "reply"]


def test_launch_prints_its_url_and_no_share_link_hint(app_store, capfd):
    """Gradio's "To create a public link, set share=True" would suggest something the app never does."""
    from tests.processes import free_port
    from ui.app import close_app, launch

    demo, url = launch(app_store, port=free_port(), block=False)
    try:
        out = capfd.readouterr().out
    finally:
        close_app(demo)
    assert f"* Running on {url}" in out and "never makes a public share link" in out
    assert "share=True" not in out
