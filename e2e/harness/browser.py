"""The dashboard seen by a person (headless Chromium driven by Selenium) and by a plain
HTTP client (its forms read from the HTML, its session cookie kept by httpx).

Chromium and chromedriver are Debian's (`chromium`, `chromium-driver`), at fixed
paths: Selenium is given both, and `SE_OFFLINE=true` keeps selenium-manager from
fetching a browser or a driver of its own. The browser reaches loopback only: every
other address goes through a proxy on a closed loopback port, so a page that needs
the internet fails here as it would on an offline machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "sudo apt-get install -y chromium chromium-driver"
WINDOW = (1366, 900)
# How long a page, an element or a state change may take before a test fails.
WAIT_S = 10.0
PAGE_LOAD_S = 20.0
SCRIPT_S = 10.0

ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    # Nothing but loopback: Chrome's own traffic off, any other address to a dead proxy
    # (loopback is never proxied).
    "--proxy-server=http://127.0.0.1:9",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--lang=en-US",
]

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or chromedriver is not installed where the tests look for it."""


def check_installed() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} not found: the dashboard's browser tests drive Debian's Chromium "
            f"through its chromedriver. Install them with `{INSTALL}`"
        )


def start_chromium(log_path: Path) -> WebDriver:
    """A headless Chromium of WINDOW's size, its console kept for `get_log('browser')`."""
    check_installed()
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log_path))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as e:
        log = log_path.read_text("utf-8", "replace")[-4000:] if log_path.exists() else ""
        raise BrowserMissing(f"Chromium did not start: {e.msg}\nchromedriver log:\n{log}") from e
    driver.set_page_load_timeout(PAGE_LOAD_S)
    driver.set_script_timeout(SCRIPT_S)
    # The page itself is WINDOW's size (the window's own frame would otherwise take
    # some of its height), for screenshots of exactly that size.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


@dataclass
class Browser:
    """One Chromium session on the dashboard served at `base` (`http://127.0.0.1:PORT/ui`)."""

    driver: WebDriver
    base: str

    # --- navigation and waiting ---

    def url(self, path: str = "/") -> str:
        return self.base + path

    def open(self, path: str = "/") -> None:
        self.driver.get(self.url(path))

    def path(self) -> str:
        """The current address's path and query."""
        parts = urlsplit(self.driver.current_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def until(
        self, what: str, condition: Callable[[WebDriver], T], timeout: float = WAIT_S, every: float = 0.1
    ) -> T:
        """Waits (bounded) for `condition` to return something true, trying it `every`
        seconds; fails naming `what` and what the page shows."""
        try:
            wait = WebDriverWait(
                self.driver, timeout, poll_frequency=every, ignored_exceptions=(StaleElementReferenceException,)
            )
            return wait.until(condition)
        except TimeoutException:
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{self.describe()}") from None

    def wait_until_replaced(self, what: str, element: WebElement, timeout: float = WAIT_S) -> None:
        """Until `element` has left the document, as when a click loads the next page.

        Selenium's `staleness_of` asks the element whether it is enabled. While the old
        document is being torn down, chromedriver may answer that with "unknown error:
        ... Node with given id does not belong to the document" instead of a stale
        element reference; both mean the element is gone."""

        def gone(_: WebDriver) -> bool:
            try:
                element.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as e:
                if "does not belong to the document" in (e.msg or ""):
                    return True
                raise
            return False

        self.until(what, gone, timeout)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = WAIT_S) -> WebElement:
        """The first element matching `css`, once there is one."""

        def present(d: WebDriver) -> WebElement | None:
            found = d.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found else None

        return self.until(f"an element `{css}`", present, timeout)

    def wait_for_text(self, css: str, timeout: float = WAIT_S) -> str:
        """The text of `css` once it is not blank."""

        def filled(d: WebDriver) -> str | None:
            found = d.find_elements(By.CSS_SELECTOR, css)
            text = found[0].text.strip() if found else ""
            return text or None

        return self.until(f"text in `{css}`", filled, timeout)

    def wait_for_page(self, name: str, timeout: float = WAIT_S) -> WebElement:
        """`main#page[data-page=name]`, with its `h1`."""
        main = self.wait_for(f'main#page[data-page="{name}"]', timeout)
        assert main.find_elements(By.TAG_NAME, "h1"), f"page {name!r} has no h1 in main#page\n{self.describe()}"
        return main

    def wait_for_path(self, path: str, timeout: float = WAIT_S) -> None:
        """Until the address's path (query left out) is `path` (relative to `base`)."""
        want = urlsplit(self.url(path)).path
        self.until(f"the address {want}", lambda d: urlsplit(d.current_url).path == want, timeout)

    def describe(self) -> str:
        """Where the browser is and what it shows, for failure messages."""
        try:
            body = self.driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException:
            body = "<no body>"
        body = body if len(body) <= 1500 else body[:1500] + " [...]"
        return f"at {self.driver.current_url} (title {self.driver.title!r}), the page reads:\n{body}"

    # --- what the page says ---

    def console_errors(self) -> list[str]:
        """The SEVERE console entries since the last call (reading the log empties it)."""
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def theme(self) -> str | None:
        return self.find("html").get_attribute("data-theme")

    def fetch(self, path: str) -> dict[str, Any]:
        """GETs `path` (relative to `base`, or absolute) from inside the page, with its
        session: `{"status", "type" (content-type), "text"}`."""
        url = urljoin(self.driver.current_url, path if path.startswith(("/", "http")) else self.url(path))
        result = self.driver.execute_async_script(
            """
            const [url, done] = arguments;
            fetch(url, {credentials: "same-origin"})
              .then(async r => done({status: r.status, type: r.headers.get("content-type"), text: await r.text()}))
              .catch(e => done({status: 0, type: null, text: String(e)}));
            """,
            url,
        )
        assert isinstance(result, dict), result
        return result

    # --- doing things ---

    def sign_in(self, key: str) -> None:
        """Signs in through the form; the caller checks where it led."""
        self.open("/login")
        form = self.wait_for("form#signin")
        box = form.find_element(By.CSS_SELECTOR, "input#key")
        box.clear()
        box.send_keys(key)
        self.find("button#signin-submit").click()

    def reveal(self, element: WebElement) -> None:
        """Opens the closed `<details>` that `element` is in, as a person would (by its
        summary), so its fields can be typed in."""
        summary = self.driver.execute_script(
            "const d = arguments[0].closest('details');"
            "return d && !d.open ? d.querySelector(':scope > summary') : null;",
            element,
        )
        if summary is not None:
            summary.click()

    def ensure_theme(self, theme: str) -> None:
        """Toggles the theme once unless it is `theme` already."""
        before = self.theme()
        if before == theme:
            return
        self.find("#theme-toggle").click()
        self.until(f"data-theme to change from {before!r}", lambda d: self.theme() != before)
        assert self.theme() == theme, f"the theme toggle gives {self.theme()!r}, not {theme!r}\n{self.describe()}"

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
        return path

    def quit(self) -> None:
        try:
            self.driver.quit()
        except WebDriverException:
            pass


# === the dashboard without a browser ===


@dataclass
class Form:
    """A form as the HTML gives it: where it goes and the values it would send."""

    id: str | None
    action: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._first_option: str | None = None
        self._selected = False
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("id"), a.get("action"), (a.get("method") or "get").lower())
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "image", "reset", "file"):
                self._form.fields[a["name"]] = a.get("value", "on" if kind in ("checkbox", "radio") else "")
        elif tag == "select" and a.get("name"):
            self._select, self._first_option, self._selected = a["name"], None, False
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self._form.fields[self._select] = value
                self._selected = True
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self._form.fields[self._textarea] = ""

    def handle_data(self, data: str) -> None:
        if self._form is not None and self._textarea is not None:
            self._form.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None and self._form is not None:
            if not self._selected and self._first_option is not None:
                self._form.fields[self._select] = self._first_option
            self._select = None
        elif tag == "textarea":
            self._textarea = None


@dataclass
class Tag:
    """A start tag, with the attributes of the table row it is in (if any)."""

    name: str
    attrs: dict[str, str]
    row: dict[str, str] | None

    def has_class(self, *names: str) -> bool:
        classes = self.attrs.get("class", "").split()
        return all(n in classes for n in names)


class _TagParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[Tag] = []
        self._row: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr":
            self._row = a
        self.tags.append(Tag(tag, a, self._row))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("tr", "table"):
            self._row = None


def tags(html: str) -> list[Tag]:
    """Every start tag of the page, in order."""
    parser = _TagParser()
    parser.feed(html)
    parser.close()
    return parser.tags


def row_ids(html: str, attr: str) -> list[str]:
    """The `attr` (`data-key-id`, `data-request-id`) of every table row that has it."""
    return [t.attrs[attr] for t in tags(html) if t.name == "tr" and attr in t.attrs]


def row_link(html: str, attr: str, value: str, link_class: str) -> str | None:
    """The href of the first `a.<link_class>` in the row whose `attr` is `value`."""
    for t in tags(html):
        if t.name == "a" and t.has_class(link_class) and t.row is not None and t.row.get(attr) == value:
            return t.attrs.get("href")
    return None


def forms(html: str) -> dict[str, Form]:
    """The page's forms that have an id, by id."""
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return {f.id: f for f in parser.forms if f.id}


def form_target(page_url: str, form: Form) -> str:
    """The absolute address a form posts to."""
    return urljoin(page_url, form.action or page_url)


def sign_in_http(base: str, key: str, timeout: float = 10) -> httpx.Client:
    """An httpx client signed in to the dashboard at `base` with `key` (it holds the
    session cookie); fails unless the sign-in answers 303 to the overview."""
    client = httpx.Client(timeout=timeout, follow_redirects=False)
    try:
        page = client.get(f"{base}/login")
        assert page.status_code == 200, f"GET {base}/login answered {page.status_code}: {page.text[:500]}"
        signin = forms(page.text).get("signin")
        assert signin is not None, f"no form#signin on {base}/login: {page.text[:1000]}"
        answer = client.post(form_target(str(page.url), signin), data={**signin.fields, "key": key})
        assert answer.status_code == 303, f"sign-in answered {answer.status_code}: {answer.text[:800]}"
        location = urljoin(str(answer.url), answer.headers.get("location", ""))
        assert urlsplit(location).path == urlsplit(f"{base}/").path, f"sign-in led to {location}"
    except BaseException:
        client.close()
        raise
    return client


def poll(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Calls `check` until it returns something true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)
