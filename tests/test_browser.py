"""The chat page in a real browser: Debian's Chromium, driven headless by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from bots.http import create_app
from embeddings.encoder import Encoder
from qa.engine import Verbatim
from qa.settings import Settings

from .conftest import seeds_with
from .live_server import LiveServer

TROOPS = "How many U.S. military personnel are forward deployed in the region?"
HR_DOC = (
    "# Parental leave policy\n\nEmployees may take up to sixteen weeks of paid parental leave.\n"
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = (
    "Hostile notes\n\n"
    "The launch code review happens every Tuesday <script>window.pwned = 1</script> in room 4.\n\n"
    'The parking garage closes at nine <img src=x onerror="window.pwned = 2"> every night.\n'
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make test`, which installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Iterator[LiveServer]:
    corpus = seeds_with(tmp_path_factory.mktemp("browser-corpus"), "hostile.txt", HOSTILE)
    settings = Settings(
        home=tmp_path_factory.mktemp("browser-home"),
        rate_limit="",
        example_questions=[TROOPS],
    )
    engine = Verbatim(settings, encoder)
    engine.build_index([corpus])
    hr = tmp_path_factory.mktemp("browser-hr")
    (hr / "leave.md").write_text(HR_DOC, encoding="utf-8")
    Verbatim(settings.model_copy(update={"collection": "hr"}), encoder).build_index([hr])
    with LiveServer(create_app(settings, engine)) as server:
        server.wait_ready()
        yield server


def test_ask_see_quotes_and_no_answer(browser: Browser, live: LiveServer, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(live.url)
    page.fill("#question", "How many U.S. military personnel are forward deployed in the region?")
    page.click("button[type=submit]")
    first = page.locator(".exchange").nth(0)
    expect(first.locator("blockquote").first).to_contain_text("about 100,000 forward deployed")
    expect(first.locator(".source").first).to_contain_text(
        "Japan-U.S. Joint Declaration on Security"
    )
    expect(first.locator(".source").first).to_contain_text("§ (2) (ii)")
    first.locator("summary").first.click()
    expect(first.locator("mark").first).to_contain_text("about 100,000")

    page.fill("#question", "What is the capital of France?")
    page.press("#question", "Enter")
    second = page.locator(".exchange").nth(1)
    expect(second.locator(".no-answer")).to_have_text("No answer in the documents.")
    expect(page.locator(".exchange")).to_have_count(2)  # the conversation stays on the page
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 0


def test_document_markup_is_shown_not_run(browser: Browser, live: LiveServer) -> None:
    page = browser.new_page()
    page.goto(live.url)
    for question in ("When is the launch code review?", "When does the parking garage close?"):
        count = page.locator(".exchange").count()
        page.fill("#question", question)
        page.click("button[type=submit]")
        expect(page.locator(".exchange").nth(count).locator("blockquote").first).to_be_visible()
    quotes = " ".join(page.locator("blockquote").all_inner_texts())
    assert "<script>window.pwned = 1</script>" in quotes
    assert '<img src=x onerror="window.pwned = 2">' in quotes
    assert page.evaluate("window.pwned") is None
    assert page.locator("blockquote script, blockquote img").count() == 0


def test_the_newest_answer_is_shown_above_the_input_bar(browser: Browser, live: LiveServer) -> None:
    page = browser.new_page(viewport={"width": 800, "height": 600})
    page.goto(live.url)
    questions = [
        "How many U.S. military personnel are forward deployed in the region?",
        "Which guidelines would the two governments review?",
        "What is the cornerstone of regional peace and security?",
    ]
    for n, question in enumerate(questions):
        page.fill("#question", question)
        page.press("#question", "Enter")
        answer = page.locator(".exchange").nth(n).locator(".answer")
        expect(answer).not_to_contain_text("Searching")
    # a condition, polled by the browser: the last answer's end sits above the fixed form
    page.wait_for_function(
        """() => {
            const answers = document.querySelectorAll(".exchange .answer");
            const last = answers[answers.length - 1].getBoundingClientRect();
            const form = document.getElementById("ask").getBoundingClientRect();
            return last.bottom <= form.top && last.bottom > 0;
        }""",
        timeout=10_000,
    )
    icon = page.request.get(f"{live.url}/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml")


def test_an_empty_page_says_what_is_indexed_and_offers_questions(
    browser: Browser, live: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(live.url)
    intro = page.locator("#intro")
    expect(intro).to_contain_text("3 documents indexed (3 in English)")
    expect(intro.locator(".titles")).to_contain_text("Japan-U.S. Joint Declaration on Security")
    examples = intro.locator("button.example")
    expect(examples).to_have_text([TROOPS])  # VERBATIM_EXAMPLE_QUESTIONS
    examples.first.click()  # asks it
    expect(intro).to_be_hidden()  # the conversation replaces it
    first = page.locator(".exchange").first
    expect(first.locator(".question")).to_have_text(TROOPS)
    expect(first.locator("blockquote").first).to_contain_text("about 100,000 forward deployed")


def test_a_quote_opens_highlighted_in_its_document_and_copies_with_its_citation(
    browser: Browser, live: LiveServer
) -> None:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page = context.new_page()
    page.goto(live.url)
    page.fill("#question", TROOPS)
    page.press("#question", "Enter")
    quote = page.locator(".exchange .quote").first
    expect(quote.locator("blockquote")).to_contain_text("about 100,000")
    quoted = quote.locator("blockquote").inner_text()

    quote.locator("button.copy").click()
    expect(quote.locator("button.copy")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert quoted in copied and "Japan-U.S. Joint Declaration on Security" in copied

    link = quote.locator("a.open").get_attribute("href")
    assert link and link.startswith("/documents/001_dd8c4ca6def8021f#chars=")
    start, end = map(int, link.split("#chars=")[1].split("-"))
    page.goto(live.url + link)  # a stable address: what a Slack message or an e-mail links to
    expect(page.locator("#title")).to_have_text("Japan-U.S. Joint Declaration on Security")
    expect(page.locator("#text mark")).to_have_text(quoted)
    text = httpx.get(f"{live.url}/v1/documents/001_dd8c4ca6def8021f").json()["text"]
    assert text[start:end] == quoted  # the highlight is the quote's own offsets
    expect(page.locator("#text mark")).to_be_in_viewport()
    context.close()


def test_japanese_text_is_drawn_with_a_japanese_font(browser: Browser, live: LiveServer) -> None:
    page = browser.new_page()
    page.goto(live.url)
    page.fill("#question", "地域に前方展開している米軍の兵力はどのくらいですか?")
    page.press("#question", "Enter")
    expect(page.locator(".exchange .question")).to_be_visible()
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": ".exchange .question"})
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
    families = {f["familyName"] for f in fonts if f["glyphCount"] > 0}
    assert any("CJK" in family or "JP" in family for family in families), families


def test_a_follow_up_in_the_page_is_read_with_the_question_before_it(
    browser: Browser, live: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(live.url)

    def ask(question: str, n: int) -> None:
        page.fill("#question", question)
        page.press("#question", "Enter")
        expect(page.locator(".exchange").nth(n).locator(".answer")).not_to_contain_text("Searching")

    ask("When was the Japan-U.S. Joint Declaration on Security issued?", 0)
    ask("What did it reaffirm?", 1)  # only makes sense with the question before it
    follow_up = page.locator(".exchange").nth(1)
    expect(follow_up.locator("blockquote").first).to_contain_text(
        "reaffirmed the importance of the Japan-U.S. security arrangements"
    )
    expect(follow_up.locator(".context")).to_contain_text("When was the Japan-U.S. Joint")

    page.click("#new-chat")
    expect(page.locator(".exchange")).to_have_count(0)
    ask("What did it reaffirm?", 0)  # a new chat: nothing to point back to
    expect(page.locator(".exchange").nth(0).locator(".context")).to_have_count(0)


def test_the_collection_picker_asks_the_chosen_collection(
    browser: Browser, live: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(live.url)
    expect(page.locator("#collection option")).to_have_count(2)
    page.select_option("#collection", "hr")
    expect(page.locator("#intro .titles")).to_contain_text("Parental leave policy")
    page.fill("#question", "How many weeks of parental leave may employees take?")
    page.press("#question", "Enter")
    quote = page.locator(".exchange").nth(0).locator("blockquote").first
    expect(quote).to_contain_text("sixteen weeks")
    link = page.locator(".exchange").nth(0).locator("a.open").first
    assert "?collection=hr#chars=" in (link.get_attribute("href") or "")
    view = browser.new_page()
    view.goto(live.url + (link.get_attribute("href") or ""))
    expect(view.locator("mark")).to_contain_text("sixteen weeks")
