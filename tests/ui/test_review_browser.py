"""The Review tab in headless Chromium: two users from a users file log in to one app and label the
same 10 pairs with the keyboard alone; the store then holds 20 labels with annotators and shown
order, and the agreement view shows the kappa sklearn computes on the same table."""

import pytest
from sklearn.metrics import cohen_kappa_score

from tests.ui.conftest import running_app
from tests.ui.test_browser import WAIT_MS, browser, shots  # noqa: F401  (that module's Chromium and screenshot fixtures)
from tests.workbench.review_data import make_review_store
from workbench.review.queue import fill_queue, shown_order
from workbench.review.users import add_user

pytestmark = pytest.mark.browser

ITEMS = 10
KEYS = {"alice": "12t1b2112t", "bob": "22t11b1222"}
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
LOAD_MS = 4 * WAIT_MS  # loading the whole app after the login; slow on a busy machine (seen: 60 s at load 6 on 2 cores)


def _log_in(browser, url, user):  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url, timeout=LOAD_MS)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(USERS[user])
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Review").click(timeout=LOAD_MS)
    return context, page


def _label_with_keys(page, keys):
    status = page.locator("#review-status")
    for done, key in enumerate(keys):
        status.get_by_text(f"{done} labelled · {ITEMS - done} left").wait_for()
        page.keyboard.press(key)
    status.get_by_text("Nothing left for you").wait_for()


def test_two_users_label_ten_pairs_with_the_keyboard(browser, shots, tmp_path):  # noqa: F811
    store = make_review_store(tmp_path)
    assert fill_queue(store, "default", "random-audit", size=ITEMS, overlap=2).added == ITEMS
    users = tmp_path / "users.txt"
    for name, password in USERS.items():
        add_user(users, name, password)
    keys = KEYS
    with running_app(store, users_file=users) as (demo, url):
        pages = []
        for user in USERS:
            context, page = _log_in(browser, url, user)
            page.locator("#review-left-text").wait_for()
            page.screenshot(path=shots / f"review-{user}.png", full_page=True)
            _label_with_keys(page, keys[user])
            pages.append((context, page))

        with store.connect() as con:
            rows = con.execute("""SELECT l.annotator, l.item_id, l.verdict, l.preferred_id, l.left_id, l.right_id,
                                         i.first_id, i.second_id, l.labeled_at
                                  FROM review_labels l JOIN review_items i USING (item_id)
                                  ORDER BY i.position, l.annotator""").fetchall()
        assert len(rows) == 2 * ITEMS
        votes = {}
        for who, item, verdict, preferred, left, right, first, second, at in rows:
            assert at is not None and (left, right) == shown_order(item, who, first, second)
            assert preferred in (None, left, right) and (verdict == "better") == (preferred is not None)
            votes.setdefault(who, {})[item] = ("first" if preferred == first else "second" if preferred == second
                                               else verdict)
        # the keys pressed map to the stored verdicts through each user's shown order
        for who in USERS:
            pressed = {"1": "left", "2": "right", "t": "tie", "b": "both-bad"}
            for (who_, item, verdict, preferred, left, right, *_), key in zip(
                    [r for r in rows if r[0] == who], keys[who]):
                kind = pressed[key]
                assert preferred == (left if kind == "left" else right if kind == "right" else None)
                assert kind in ("left", "right") or verdict == kind
        items = sorted(votes["alice"])
        expected = cohen_kappa_score([votes["alice"][i] for i in items], [votes["bob"][i] for i in items])

        context, page = pages[-1]
        page.get_by_role("button", name="Compute agreement").click()
        page.locator("#review-agreement").get_by_text("Cohen's kappa").wait_for()
        shown = page.locator("#review-agreement").inner_text()
        assert f"Cohen's kappa: {expected:.4f}" in shown, shown
        page.screenshot(path=shots / "review-agreement.png", full_page=True)
        for context, page in pages:
            context.close()
