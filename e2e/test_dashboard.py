"""The dashboard (`/ui`), as a person sees it in a real headless Chromium, and its
access rules over plain HTTP.

One gateway (admin key, keys mode, a SQLite store, the usage log written every
200 ms) in front of the clean mock. One Chromium session signed in with the admin key
serves most tests; the tests that sign in or out start their own. Sign-ins are kept
few: the dashboard lets one address try 10 a minute.

Every page is also photographed (1366x900, light theme; the overview in dark too)
into $SWITCHYARD_SCREENSHOTS (default target/screenshots), and into docs/screenshots/
as well when SWITCHYARD_SCREENSHOTS_DOCS=1.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select

from harness import browser, clients, config, mock
from harness.browser import Browser
from harness.processes import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "sk-e2e-dashboard-admin"
# Public model → (provider, the mock's model behind it); deployments read `mock/…`.
# `slow` streams 10 tokens a second, so the playground can be seen mid-answer.
MODELS = {"gpt-4.1": ("mock", "mock-1"), "gpt-4.1-mini": ("mock", "mock-mini"), "slow": ("mock-slow", "mock-1")}
PRICE = {"input": 2.0, "output": 8.0}

# Each signed-in page: its path under /ui and what it must hold.
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "overview": (
        "/",
        (
            "#requests-today",
            "#error-rate",
            "#latency-p50",
            "#latency-p95",
            "#ttft-p50",
            "#spend-today",
            "#spend-month",
            "#saved-month",
            "#top-models",
            "#top-keys",
            "#top-teams",
        ),
    ),
    "costs": (
        "/costs?range=30d&by=model&bucket=day",
        ("#spend-chart svg", "#cost-table", "a#export-csv", "#budgets", "#reprice select#price-list"),
    ),
    "requests": (
        "/requests",
        (
            "table#requests",
            *(
                f'form#filters [name="{n}"]'
                for n in ("key", "team", "model", "status", "error_type", "cached", "from", "to")
            ),
        ),
    ),
    "keys": (
        "/keys",
        (
            "table#keys",
            "button#create-key-submit",
            *(
                f'form#create-key [name="{n}"]'
                for n in ("name", "team_id", "models", "rpm", "tpm", "budget_usd", "budget_period", "csrf")
            ),
            'form#create-key select[name="team_id"]',
            'form#create-key select[name="budget_period"]',
        ),
    ),
    "teams": ("/teams", ("table#teams", 'form#create-team [name="name"]', 'form#create-team [name="csrf"]')),
    "providers": ("/providers", ("table.deployments",)),
    "playground": ("/playground", ("select#model", "textarea#prompt", "button#send", "#answer", "#status")),
}
NAV = ("overview", "costs", "requests", "keys", "providers", "playground")
# The usage log is written in batches (every 200 ms here): how long a request may take
# to be seen, and how long a revoked key may keep working.
RECORDED_S = 15.0
REVOKED_S = 3.0
STREAMED_S = 20.0
# Requests sent to see the request log span pages (more than a page holds), and the
# pages a test looks through for one request at most.
PAGED = 120
MAX_PAGES = 10


# === the gateway and the sessions ===


@pytest.fixture(scope="module")
def dashboard(
    start_gateway: Callable[[str, dict[str, Any]], Server],
    start_mock: Callable[..., Server],
    mock: Server,
    run_dir: Path,
) -> Server:
    slow = start_mock("mock-dashboard-slow", "--tokens-per-second", "10")
    providers = {"mock": config.provider(f"{mock.url}/v1"), "mock-slow": config.provider(f"{slow.url}/v1")}
    deployments = {
        public: {"deployments": [{"provider": provider, "model": upstream, "price": PRICE}]}
        for public, (provider, upstream) in MODELS.items()
    }
    cfg = config.gateway(providers=providers, models=deployments)
    cfg["server"]["admin_key"] = ADMIN_KEY
    cfg["usage"] = {"flush_interval": "200ms", "spill_file": str(run_dir / "gateway-dashboard.spill.jsonl")}
    return start_gateway("gateway-dashboard", cfg)


@pytest.fixture(scope="module")
def ui(dashboard: Server) -> str:
    return f"{dashboard.url}/ui"


@pytest.fixture(scope="module")
def admin_api(dashboard: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def admin_session(chromium: Callable[[str], Browser], ui: str) -> Browser:
    """A Chromium session signed in with the admin key, for the whole module."""
    session = chromium(ui)
    session.sign_in(ADMIN_KEY)
    session.wait_for_path("/")
    session.wait_for_page("overview")
    return session


@pytest.fixture
def admin(admin_session: Browser) -> Browser:
    """The admin's Chromium session, its console emptied of what earlier tests left."""
    admin_session.console_errors()
    return admin_session


@pytest.fixture(scope="module")
def admin_http(ui: str) -> Iterator[httpx.Client]:
    """A plain HTTP client signed in with the admin key (it keeps the session cookie)."""
    with contextlib.closing(browser.sign_in_http(ui, ADMIN_KEY)) as c:
        yield c


def send(server: Server, key: str = config.CLIENT_KEY, model: str = "gpt-4.1") -> tuple[str, str]:
    """One chat request through the SDK with an `x-request-id` of its own:
    (that id, the answer)."""
    request_id = f"e2e-ui-{mock.marker()}"
    sdk = clients.sdk(server, api_key=key)
    reply = sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"hello {request_id}"}],
        extra_headers={"x-request-id": request_id},
    )
    return request_id, reply.choices[0].message.content or ""


def wait_recorded(admin_api: httpx.Client, request_id: str) -> dict[str, Any]:
    """The usage record of `request_id`, once written (bounded)."""

    def find() -> dict[str, Any] | None:
        response = admin_api.get("/admin/usage", params={"limit": 1000})
        assert response.status_code == 200, response.text
        return next((r for r in response.json()["data"] if r["request_id"] == request_id), None)

    return browser.poll(f"the usage record of {request_id}", find, RECORDED_S)


@pytest.fixture(scope="module")
def recorded(dashboard: Server, admin_api: httpx.Client) -> str:
    """The id of a request sent with the config's key, already in the usage log."""
    request_id, _ = send(dashboard)
    wait_recorded(admin_api, request_id)
    return request_id


def check_page(session: Browser, name: str, expected: tuple[str, ...] = ()) -> WebElement:
    """The page `name` is shown with the frame every page has, what it must hold, and
    no error in the browser's console."""
    main = session.wait_for_page(name)
    assert session.theme() in ("light", "dark"), f"<html data-theme={session.theme()!r}>\n{session.describe()}"
    missing = [f'nav a[data-page="{n}"]' for n in NAV if not session.find_all(f'nav a[data-page="{n}"]')]
    missing += [css for css in ("#theme-toggle", "form#signout button#signout-submit") if not session.find_all(css)]
    missing += [css for css in expected if not session.find_all(css)]
    assert not missing, f"page {name!r} lacks {missing}\n{session.describe()}"
    errors = session.console_errors()
    assert not errors, f"console errors on page {name!r} ({session.driver.current_url}):\n" + "\n".join(errors)
    return main


def reload_until_row(session: Browser, path: str, css: str, timeout: float = RECORDED_S) -> WebElement:
    """Loads `path` again and again (bounded) until it, or one of the pages after it
    (a#next-page, MAX_PAGES at most), shows `css`."""

    def shown(driver: WebDriver) -> WebElement | None:
        session.open(path)
        for _ in range(MAX_PAGES):
            found = driver.find_elements(By.CSS_SELECTOR, css)
            if found:
                return found[0]
            following = driver.find_elements(By.CSS_SELECTOR, "a#next-page")
            if not following:
                return None
            current = session.find("main#page")
            following[0].click()
            session.wait_until_replaced("the next page to load", current)
        return None

    return session.until(f"`{css}` on {path}", shown, timeout, every=0.5)


def request_link(client: httpx.Client, ui: str, request_id: str) -> str | None:
    """The address of `request_id`'s page, as /ui/requests (or a page after it) links it."""
    url = f"{ui}/requests"
    for _ in range(MAX_PAGES):
        page = client.get(url)
        assert page.status_code == 200, f"GET {url}: {page.status_code} {page.text[:500]}"
        href = browser.row_link(page.text, "data-request-id", request_id, "request-link")
        if href:
            return urljoin(str(page.url), href)
        following = [t.attrs.get("href") for t in browser.tags(page.text) if t.attrs.get("id") == "next-page"]
        if not following or not following[0]:
            return None
        url = urljoin(str(page.url), following[0])
    return None


def open_request_detail(session: Browser, request_id: str) -> None:
    row = reload_until_row(session, "/requests", f'table#requests tr[data-request-id="{request_id}"]')
    links = row.find_elements(By.CSS_SELECTOR, "a.request-link")
    assert links, f"the row of {request_id} has no a.request-link\n{session.describe()}"
    links[0].click()
    session.wait_for_page("request")


def key_row(session: Browser, name: str) -> WebElement:
    rows = [r for r in session.find_all("table#keys tr[data-key-id]") if name in r.text]
    assert len(rows) == 1, f"expected one row of table#keys naming {name!r}, got {len(rows)}\n{session.describe()}"
    return rows[0]


def chat_status(sdk: openai.OpenAI) -> str:
    """`ok` or `refused` (401) for one chat request with the SDK's key."""
    try:
        sdk.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "still there?"}])
    except openai.AuthenticationError:
        return "refused"
    return "ok"


# === in the browser ===


def test_every_page_renders_without_console_errors(admin: Browser, recorded: str) -> None:
    for name, (path, expected) in PAGES.items():
        admin.open(path)
        check_page(admin, name, expected)
    admin.open(PAGES["providers"][0])
    admin.wait_for_page("providers")
    tables = admin.find_all("table.deployments")
    assert len(tables) == len(MODELS), f"expected one table.deployments per model\n{admin.describe()}"
    for table in tables:
        text = table.text
        assert any(f"{provider}/{upstream}" in text for provider, upstream in MODELS.values()), text
        assert re.search(r"\b(closed|open|half[_ -]open)\b", text, re.I), f"no circuit state in {text!r}"
    assert not admin.console_errors()
    open_request_detail(admin, recorded)
    check_page(admin, "request", ("#route", "#tokens", "#cost", "#timings"))


def test_the_nav_links_lead_to_their_pages(admin: Browser) -> None:
    admin.open("/")
    admin.wait_for_page("overview")
    for name in (*NAV[1:], NAV[0]):
        admin.find(f'nav a[data-page="{name}"]').click()
        check_page(admin, name)


def test_a_wrong_key_is_refused_with_an_error(chromium: Callable[[str], Browser], ui: str) -> None:
    session = chromium(ui)
    session.open("/login")
    box = session.wait_for("form#signin input#key")
    assert (box.get_attribute("type"), box.get_attribute("name")) == ("password", "key"), box.get_attribute("outerHTML")
    assert session.find_all("form#signin button#signin-submit"), session.describe()
    session.sign_in("sk-not-a-key-of-this-gateway")
    session.wait_for(".flash.error")
    session.wait_for("form#signin")
    assert session.path().startswith(urlsplit(f"{ui}/login").path), session.describe()
    session.open("/")
    session.wait_for_path("/login")
    session.quit()


def fill_create_key(session: Browser, fields: dict[str, str]) -> str:
    """Fills form#create-key on the keys page with `fields` (text inputs, or the
    visible text of a select), sends it, and returns the key shown in code#new-key."""
    session.open("/keys")
    session.wait_for_page("keys")
    form = session.find("form#create-key")
    session.reveal(form)
    for name, value in fields.items():
        field = form.find_element(By.CSS_SELECTOR, f'[name="{name}"]')
        if field.tag_name == "select":
            Select(field).select_by_visible_text(value)
        else:
            field.clear()
            field.send_keys(value)
    session.find("button#create-key-submit").click()
    return session.wait_for_text("code#new-key")


def test_a_key_with_only_a_name_can_be_made_in_the_form(admin: Browser, dashboard: Server) -> None:
    secret = fill_create_key(admin, {"name": f"ui-bare-{mock.marker()}"})
    assert secret.startswith("sk-"), f"code#new-key reads {secret!r}"
    assert chat_status(clients.sdk(dashboard, api_key=secret)) == "ok"


def test_a_key_made_in_the_form_is_shown_once_works_and_dies_when_revoked(admin: Browser, dashboard: Server) -> None:
    name = f"ui-key-{mock.marker()}"
    secret = fill_create_key(admin, {"name": name, "models": "gpt-*", "rpm": "600", "budget_usd": "5"})
    assert secret.startswith("sk-"), f"code#new-key reads {secret!r}"
    assert admin.find_all("button#copy-key"), f"no button#copy-key beside the new key\n{admin.describe()}"
    assert not admin.console_errors()

    sdk = clients.sdk(dashboard, api_key=secret)
    browser.poll("the new key to be accepted", lambda: chat_status(sdk) == "ok", REVOKED_S)

    admin.open("/keys")
    admin.wait_for_page("keys")
    assert secret not in admin.driver.page_source, "the keys page shows the key's text again"
    row = key_row(admin, name)
    key_id = row.get_attribute("data-key-id")
    assert key_id, row.get_attribute("outerHTML")
    link = row.find_element(By.CSS_SELECTOR, "a.key-link")
    assert urlsplit(link.get_attribute("href") or "").path == urlsplit(admin.url(f"/keys/{key_id}")).path
    link.click()
    admin.wait_for_path(f"/keys/{key_id}")
    for css in ("form#edit-key", "form#rotate-key", "form#revoke-key"):
        admin.wait_for(css)
    assert secret not in admin.driver.page_source, "the key's page shows the key's text"
    assert not admin.find_all("#revoked"), f"a new key is shown revoked\n{admin.describe()}"

    admin.find("button#revoke-key-submit").click()
    admin.until("the confirm() before revoking", expected_conditions.alert_is_present()).accept()
    admin.wait_for("#revoked")
    assert not admin.console_errors()
    browser.poll("the revoked key to be refused (401)", lambda: chat_status(sdk) == "refused", REVOKED_S)
    assert chat_status(sdk) == "refused", "a revoked key came back"


def test_a_team_made_in_the_form_is_listed_and_offered_to_keys(admin: Browser) -> None:
    name = f"ui-team-{mock.marker()}"
    admin.open("/teams")
    admin.wait_for_page("teams")
    form = admin.find("form#create-team")
    admin.reveal(form)
    form.find_element(By.CSS_SELECTOR, '[name="name"]').send_keys(name)
    buttons = form.find_elements(By.CSS_SELECTOR, 'button, input[type="submit"]')
    assert buttons, f"form#create-team has no button\n{admin.describe()}"
    buttons[-1].click()
    admin.wait_until_replaced("the form to be sent", form)
    assert not admin.console_errors()
    admin.open("/teams")
    admin.wait_for_page("teams")
    assert name in admin.find("table#teams").text, f"table#teams does not list {name}\n{admin.describe()}"
    admin.open("/keys")
    admin.wait_for_page("keys")
    admin.reveal(admin.find("form#create-key"))
    options = Select(admin.find('form#create-key select[name="team_id"]')).options
    assert any(o.get_attribute("value") == "" for o in options), "team_id offers no empty choice (no team)"
    assert any(name in o.text for o in options), f"team_id does not offer {name}: {[o.text for o in options]}"


def test_the_request_log_shows_a_request_and_its_route(admin: Browser, dashboard: Server) -> None:
    request_id, _ = send(dashboard)
    open_request_detail(admin, request_id)
    route = admin.wait_for_text("#route")
    assert "mock/mock-1" in route, f"#route does not name the deployment mock/mock-1: {route!r}"
    attempts = admin.find_all("#route tr")
    assert any("mock/mock-1" in tr.text for tr in attempts), f"no row of #route names mock/mock-1: {route!r}"
    for css in ("#tokens", "#cost", "#timings"):
        assert admin.wait_for_text(css), css
    assert not admin.console_errors()


def test_the_request_log_filters_by_model(admin: Browser, dashboard: Server, admin_api: httpx.Client) -> None:
    full, _ = send(dashboard, model="gpt-4.1")
    mini, _ = send(dashboard, model="gpt-4.1-mini")
    wait_recorded(admin_api, full)
    wait_recorded(admin_api, mini)
    admin.open("/requests")
    admin.wait_for_page("requests")
    form = admin.find("form#filters")
    admin.reveal(form)
    form.find_element(By.CSS_SELECTOR, '[name="model"]').send_keys("gpt-4.1-mini")
    submit = form.find_elements(By.CSS_SELECTOR, 'button[type="submit"], input[type="submit"]')
    if submit:
        submit[0].click()
    else:
        form.submit()
    admin.until("the filter in the address", lambda d: "model=gpt-4.1-mini" in d.current_url)
    admin.wait_for_page("requests")
    shown = [r.get_attribute("data-request-id") for r in admin.find_all("table#requests tr[data-request-id]")]
    assert mini in shown and full not in shown, f"model=gpt-4.1-mini shows {shown}"
    assert not admin.console_errors()


def test_the_request_log_pages_through_every_record(
    admin: Browser, dashboard: Server, admin_api: httpx.Client
) -> None:
    """More records than a page holds (assumed under PAGED): followed by a#next-page,
    the pages hold each record once."""
    made = admin_api.post("/admin/keys", json={"name": f"pager-{mock.marker()}"})
    assert made.status_code == 201, made.text
    key = made.json()
    sent = [send(dashboard, key=key["key"])[0] for _ in range(PAGED)]

    def all_recorded() -> bool:
        response = admin_api.get("/admin/usage", params={"key_id": key["id"], "limit": 1000})
        assert response.status_code == 200, response.text
        return len(response.json()["data"]) >= PAGED

    browser.poll(f"the {PAGED} usage records of the pager key", all_recorded, RECORDED_S)
    admin.open(f"/requests?key={key['id']}")
    pages: list[list[str]] = []
    while True:
        admin.wait_for_page("requests")
        rows = admin.find_all("table#requests tr[data-request-id]")
        pages.append([r.get_attribute("data-request-id") or "" for r in rows])
        following = admin.find_all("a#next-page")
        if not following:
            break
        assert len(pages) < PAGED, f"a#next-page goes on past {len(pages)} pages"
        current = admin.find("main#page")
        following[0].click()
        admin.wait_until_replaced("the next page to load", current)
    shown = [rid for page in pages for rid in page]
    assert len(pages) >= 2, f"{PAGED} records on one page, no a#next-page"
    assert len(shown) == len(set(shown)), "a record is shown on two pages"
    assert sorted(shown) == sorted(sent), f"pages show {len(shown)} records, {PAGED} were sent"
    assert shown == list(reversed(sent)), "the log is not newest first"
    assert not admin.console_errors()


def test_the_overview_refreshes_itself(admin: Browser, dashboard: Server) -> None:
    admin.open("/")
    admin.wait_for_page("overview")
    before = admin.wait_for_text("#requests-today")
    send(dashboard)
    admin.until(
        f"#requests-today to change from {before!r} with no reload by the test",
        lambda d: d.find_element(By.CSS_SELECTOR, "#requests-today").text.strip() not in ("", before),
        timeout=RECORDED_S + 10,
    )
    assert not admin.console_errors()


@pytest.mark.parametrize("bucket", ["day", "hour"])
def test_the_costs_export_is_csv(admin: Browser, recorded: str, bucket: str) -> None:
    admin.open(f"/costs?range=30d&by=model&bucket={bucket}")
    check_page(admin, "costs", PAGES["costs"][1])
    href = admin.find("a#export-csv").get_attribute("href")
    assert href, f"a#export-csv has no href\n{admin.describe()}"
    got = admin.fetch(href)
    assert got["status"] == 200, f"GET {href}: {got['status']} {got['text'][:500]}"
    assert (got["type"] or "").startswith("text/csv"), f"GET {href}: content-type {got['type']!r}"
    rows = list(csv.reader(io.StringIO(got["text"])))
    assert rows, f"GET {href}: empty"
    header = rows[0]
    assert header[:2] == [bucket, "model"], f"header {header}"
    assert "requests" in header and "cost_usd" in header, f"header {header}"
    assert all(len(r) == len(header) for r in rows), f"ragged rows: {rows[:5]}"
    records = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    mine = [r for r in records if r["model"] == "gpt-4.1"]
    assert mine, f"no row for gpt-4.1: {rows}"
    stamp = r"\d{4}-\d{2}-\d{2}" if bucket == "day" else r"\d{4}-\d{2}-\d{2}T\d{2}"
    assert all(re.match(stamp, r[bucket]) for r in mine), mine
    assert sum(int(r["requests"]) for r in mine) >= 1, mine
    assert sum(float(r["cost_usd"]) for r in mine) > 0, f"priced deployments, but no cost: {mine}"


def test_the_playground_streams_an_answer(admin: Browser) -> None:
    word = mock.marker()
    partial = play(admin, word, model="slow", watch=True)
    answer = admin.find("#answer").text
    assert word in answer, f"#answer {answer!r} does not echo the prompt's {word}"
    assert partial and len(partial) < len(answer) and answer.startswith(partial.strip()), (
        f"not seen streaming: {partial!r} before {answer!r}"
    )
    route = admin.wait_for_text("#route")
    assert "mock-slow/mock-1" in route, f"#route does not name the deployment mock-slow/mock-1: {route!r}"
    assert admin.wait_for_text("#tokens")
    assert admin.wait_for_text("#cost", timeout=RECORDED_S)
    assert not admin.console_errors()


def play(session: Browser, word: str, model: str = "gpt-4.1", watch: bool = False) -> str | None:
    """Sends a prompt from the playground and waits for the whole answer; with `watch`,
    returns the first part of the answer seen while it was still streaming."""
    session.open("/playground")
    session.wait_for_page("playground")
    Select(session.find("select#model")).select_by_value(model)
    prompt = session.find("textarea#prompt")
    prompt.clear()
    prompt.send_keys(f"say {word}")
    session.find("button#send").click()

    def partial(d: WebDriver) -> str | None:
        status = d.find_element(By.CSS_SELECTOR, "#status").text.strip()
        text = d.find_element(By.CSS_SELECTOR, "#answer").text
        return text if status != "done" and text.strip() else None

    seen = session.until("part of the answer while #status is not yet `done`", partial, STREAMED_S) if watch else None
    session.until(
        "#status to read `done`",
        lambda d: d.find_element(By.CSS_SELECTOR, "#status").text.strip() == "done",
        STREAMED_S,
    )
    assert session.find("#answer").text.strip(), f"#answer is empty\n{session.describe()}"
    return seen


def test_the_theme_toggle_sticks_and_sign_out_ends_the_session(chromium: Callable[[str], Browser], ui: str) -> None:
    session = chromium(ui)
    session.sign_in(ADMIN_KEY)
    session.wait_for_path("/")
    check_page(session, "overview")
    before = session.theme()
    session.find("#theme-toggle").click()
    session.until("data-theme to flip", lambda d: session.theme() not in (None, before))
    after = session.theme()
    assert {before, after} == {"light", "dark"}, (before, after)
    stored = session.driver.execute_script("return Object.values(window.localStorage)")
    assert any(after in str(v) for v in stored), f"localStorage holds {stored}, not the theme {after!r}"
    session.driver.refresh()
    session.wait_for_page("overview")
    session.until(f"data-theme {after!r} after a reload", lambda d: session.theme() == after)
    session.open("/keys")
    session.wait_for_page("keys")
    session.until(f"data-theme {after!r} on another page", lambda d: session.theme() == after)

    session.find("button#signout-submit").click()
    session.wait_for_path("/login")
    session.wait_for("form#signin")
    session.open("/")
    session.wait_for_path("/login")
    session.open("/keys")
    session.wait_for_path("/login")
    assert not session.console_errors()
    session.quit()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_screenshots_of_every_page(
    admin: Browser, chromium: Callable[[str], Browser], ui: str, recorded: str, admin_api: httpx.Client
) -> None:
    out = Path(os.environ.get("SWITCHYARD_SCREENSHOTS") or REPO_ROOT / "target" / "screenshots")
    shots: list[Path] = []

    signed_out = chromium(ui)
    signed_out.open("/login")
    signed_out.wait_for("form#signin")
    shots.append(signed_out.screenshot(out / "login.png"))
    signed_out.quit()

    team = admin_api.post("/admin/teams", json={"name": f"research-{mock.marker()}"})
    assert team.status_code == 201, team.text
    key = admin_api.post("/admin/keys", json={"name": "notebook", "team_id": team.json()["id"], "rpm": 60})
    assert key.status_code == 201, key.text

    admin.open("/")
    admin.wait_for_page("overview")
    admin.ensure_theme("light")
    for name, (path, expected) in PAGES.items():
        if name == "playground":
            play(admin, "screenshot")
            admin.wait_for_text("#cost", timeout=RECORDED_S)
        else:
            admin.open(path)
            check_page(admin, name, expected)
        shots.append(admin.screenshot(out / f"{name}.png"))
    open_request_detail(admin, recorded)
    shots.append(admin.screenshot(out / "request.png"))
    admin.open(f"/keys/{key.json()['id']}")
    admin.wait_for("form#edit-key")
    shots.append(admin.screenshot(out / "key.png"))

    admin.open("/")
    admin.wait_for_page("overview")
    admin.ensure_theme("dark")
    shots.append(admin.screenshot(out / "overview-dark.png"))
    admin.ensure_theme("light")
    assert not admin.console_errors()

    for shot in shots:
        assert png_size(shot) == browser.WINDOW, f"{shot} is {png_size(shot)}, not {browser.WINDOW}"
    if os.environ.get("SWITCHYARD_SCREENSHOTS_DOCS") == "1":
        docs = REPO_ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, docs / shot.name)


# === over plain HTTP: who may see and change what ===


def test_the_sign_in_form_refuses_a_wrong_key_with_401(ui: str) -> None:
    with httpx.Client(timeout=10) as c:
        page = c.get(f"{ui}/login")
        assert page.status_code == 200, page.text[:500]
        signin = browser.forms(page.text)["signin"]
        answer = c.post(browser.form_target(str(page.url), signin), data={**signin.fields, "key": "sk-wrong"})
        assert answer.status_code == 401, f"{answer.status_code}: {answer.text[:500]}"
        assert any(t.has_class("flash", "error") for t in browser.tags(answer.text)), answer.text[:2000]
        assert "signin" in browser.forms(answer.text), "the refused sign-in does not show form#signin again"


def detail_paths(admin_http: httpx.Client, ui: str, request_id: str, admin_api: httpx.Client) -> list[str]:
    """Paths of a key's page and a request's page, as the admin's pages link them."""
    keys = admin_api.get("/admin/keys", params={"limit": 1}).json()["data"]
    if not keys:
        made = admin_api.post("/admin/keys", json={"name": "detail"})
        assert made.status_code == 201, made.text
        keys = [made.json()]
    href = request_link(admin_http, ui, request_id)
    assert href, f"no a.request-link in the row of {request_id} on /ui/requests"
    return [f"/keys/{keys[0]['id']}", urlsplit(href).path.removeprefix(urlsplit(ui).path)]


def test_every_page_needs_a_session(
    ui: str, admin_http: httpx.Client, admin_api: httpx.Client, recorded: str
) -> None:
    paths = [path for path, _ in PAGES.values()] + detail_paths(admin_http, ui, recorded, admin_api)
    login = urlsplit(f"{ui}/login").path
    with httpx.Client(timeout=10) as anonymous:
        for path in paths:
            response = anonymous.get(f"{ui}{path}")
            assert response.status_code == 303, f"GET {path} without a session: {response.status_code}"
            location = urljoin(str(response.url), response.headers.get("location", ""))
            assert urlsplit(location).path == login, f"GET {path} without a session leads to {location}"


def create_key_form(admin_http: httpx.Client, ui: str) -> tuple[str, browser.Form]:
    page = admin_http.get(f"{ui}/keys")
    assert page.status_code == 200, page.text[:500]
    form = browser.forms(page.text).get("create-key")
    assert form is not None, "no form#create-key on /ui/keys"
    assert form.fields.get("csrf"), f"form#create-key has no csrf value: {form.fields}"
    return browser.form_target(str(page.url), form), form


def key_names(admin_api: httpx.Client) -> list[str]:
    response = admin_api.get("/admin/keys", params={"limit": 200, "include_revoked": "true"})
    assert response.status_code == 200, response.text
    return [k["name"] for k in response.json()["data"]]


def test_a_post_needs_a_session_and_the_csrf_token(ui: str, admin_http: httpx.Client, admin_api: httpx.Client) -> None:
    target, form = create_key_form(admin_http, ui)
    name = f"csrf-{mock.marker()}"
    fields = {**form.fields, "name": name, "budget_usd": "1"}

    with httpx.Client(timeout=10) as anonymous:
        response = anonymous.post(target, data=fields)
        assert response.status_code == 401, f"POST {target} without a session: {response.status_code}"
    no_token = {k: v for k, v in fields.items() if k != "csrf"}
    response = admin_http.post(target, data=no_token)
    assert response.status_code == 403, f"POST {target} without csrf: {response.status_code}"
    response = admin_http.post(target, data={**fields, "csrf": "0" * len(fields["csrf"])})
    assert response.status_code == 403, f"POST {target} with a wrong csrf: {response.status_code}"
    response = admin_http.post(target, data={**fields, "csrf": ""})
    assert response.status_code == 403, f"POST {target} with an empty csrf: {response.status_code}"
    assert name not in key_names(admin_api), "a refused POST made the key all the same"

    response = admin_http.post(target, data=fields)
    assert response.status_code < 400, f"POST {target} with csrf: {response.status_code} {response.text[:500]}"
    assert name in key_names(admin_api)


def test_a_team_key_sees_only_its_own_team(
    ui: str, dashboard: Server, admin_api: httpx.Client, admin_http: httpx.Client
) -> None:
    def make(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = admin_api.post(path, json=body)
        assert response.status_code == 201, f"POST {path}: {response.status_code} {response.text}"
        return response.json()

    marker = mock.marker()
    team_a, team_b = (make("/admin/teams", {"name": f"team-{t}-{marker}"}) for t in "ab")
    key_a = make("/admin/keys", {"name": f"key-a-{marker}", "team_id": team_a["id"]})
    key_b = make("/admin/keys", {"name": f"key-b-{marker}", "team_id": team_b["id"]})
    seen_a, _ = send(dashboard, key=key_a["key"])
    seen_b, _ = send(dashboard, key=key_b["key"])
    wait_recorded(admin_api, seen_a)
    record_b = wait_recorded(admin_api, seen_b)
    assert record_b["team_id"] == team_b["id"], record_b
    href_b = request_link(admin_http, ui, seen_b)
    assert href_b, f"the admin does not see {seen_b} on /ui/requests"

    with contextlib.closing(browser.sign_in_http(ui, key_a["key"])) as member:
        keys = member.get(f"{ui}/keys")
        assert keys.status_code == 200, keys.text[:500]
        listed = browser.row_ids(keys.text, "data-key-id")
        assert key_a["id"] in listed, f"team a's key does not see itself: {listed}"
        assert key_b["id"] not in keys.text and key_b["name"] not in keys.text, "team b's key is shown to team a"
        for key_id in listed:
            shown = admin_api.get(f"/admin/keys/{key_id}").json()
            assert shown.get("team_id") == team_a["id"], f"team a's session lists {shown}"

        requests = member.get(f"{ui}/requests")
        assert requests.status_code == 200, requests.text[:500]
        assert seen_a in browser.row_ids(requests.text, "data-request-id"), "team a's own request is not listed"
        assert seen_b not in requests.text, "team b's request is shown to team a"
        other = member.get(f"{ui}/requests", params={"team": team_b["id"]})
        assert other.status_code == 403 or (other.status_code == 200 and seen_b not in other.text), (
            f"/requests?team=<team b>: {other.status_code}, shows team b's request: {seen_b in other.text}"
        )
        detail = member.get(href_b)
        assert detail.status_code in (403, 404), f"team b's request page for team a: {detail.status_code}"
        detail = member.get(f"{ui}/keys/{key_b['id']}")
        assert detail.status_code in (403, 404), f"team b's key page for team a: {detail.status_code}"
