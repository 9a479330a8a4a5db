// The chat page. All document text goes into the page as text nodes (textContent), never as
// HTML, so a document that contains markup or <script> is shown, not run.
"use strict";

const form = document.getElementById("ask");
const input = document.getElementById("question");
const keyInput = document.getElementById("api-key");
const history = document.getElementById("history");
const intro = document.getElementById("intro");
const newChat = document.getElementById("new-chat");
// The conversation the next question continues (the server issues it with each answer), so
// "when was it signed?" is read with the question before it. "New chat" starts over.
let conversationId = null;
// Which collection questions go to: the picker lists those the API key may read.
const picker = document.getElementById("collection");
let collection = "default";
const LANGUAGES = { en: "English", ja: "Japanese" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function documentLink(quote) {
  // A stable address of the quote: its document (in its collection), highlighted at its offsets
  const where = collection === "default" ? "" : `?collection=${encodeURIComponent(collection)}`;
  return `/documents/${encodeURIComponent(quote.doc_id)}${where}#chars=${quote.char_start}-${quote.char_end}`;
}

function citation(quote) {
  const where = [quote.title, quote.date, quote.source, quote.url].filter(Boolean).join(", ");
  return `“${quote.text}” (${where}; characters ${quote.char_start}–${quote.char_end})`;
}

function quoteActions(quote) {
  const actions = el("div", "actions");
  const open = el("a", "open", "Open in document");
  open.href = documentLink(quote);
  const copy = el("button", "copy", "Copy with citation");
  copy.type = "button";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(citation(quote));
      copy.textContent = "Copied";
    } catch (error) {
      copy.textContent = "Copy failed";
    }
  });
  actions.append(open, copy);
  return actions;
}

function sourceLine(quote) {
  const line = el("div", "source");
  const title = quote.url ? el("a", "title", quote.title) : el("span", "title", quote.title);
  if (quote.url) {
    title.href = quote.url;
    title.rel = "noopener noreferrer";
    title.target = "_blank";
  }
  line.append(title);
  for (const part of [quote.date, quote.source, quote.section && "§ " + quote.section]) {
    if (part) line.append(el("span", "meta", part));
  }
  return line;
}

function passageWithQuote(quote) {
  // The quote is passage[start:end], with offsets from the answer itself.
  const start = quote.char_start - quote.passage_start;
  const end = quote.char_end - quote.passage_start;
  const passage = el("p", "passage");
  passage.append(
    document.createTextNode(quote.passage.slice(0, start)),
    el("mark", null, quote.passage.slice(start, end)),
    document.createTextNode(quote.passage.slice(end)),
  );
  return passage;
}

function renderAnswer(answer, target) {
  target.replaceChildren();
  if (answer.status === "no_answer") {
    target.append(el("p", "no-answer", "No answer in the documents."));
    return;
  }
  for (const quote of answer.quotes) {
    const item = el("figure", "quote");
    item.append(el("blockquote", null, quote.text), sourceLine(quote), quoteActions(quote));
    const details = el("details");
    details.append(el("summary", null, "Passage"), passageWithQuote(quote));
    item.append(details);
    target.append(item);
  }
}

function headers() {
  const headers = { "Content-Type": "application/json" };
  if (keyInput.value) {
    headers["Authorization"] = "Bearer " + keyInput.value;
    sessionStorage.setItem("verbatim-api-key", keyInput.value); // for the document view
  }
  return headers;
}

async function showIntro() {
  // Before the first question: the collections this key may read, what is indexed in the
  // chosen one, and a few questions to start from.
  try {
    const listed = await fetch("/v1/collections", { headers: headers() });
    if (listed.status === 401) keyInput.classList.remove("hidden");
    if (!listed.ok) return;
    fillPicker(await listed.json());
    const query = "?collection=" + encodeURIComponent(collection);
    const [documents, examples] = await Promise.all(
      ["/v1/documents" + query, "/v1/examples" + query].map((url) =>
        fetch(url, { headers: headers() }),
      ),
    );
    if (!documents.ok || !examples.ok) return;
    renderIntro(await documents.json(), (await examples.json()).questions);
  } catch (error) {
    // the page still works without the introduction
  }
}

function renderIntro(documents, questions) {
  const counts = {};
  for (const d of documents) counts[d.lang] = (counts[d.lang] || 0) + 1;
  const languages = Object.entries(counts)
    .map(([lang, n]) => `${n} in ${LANGUAGES[lang] || lang}`)
    .join(", ");
  const noun = documents.length === 1 ? "document" : "documents";
  intro.replaceChildren(
    el("p", "indexed", `${documents.length} ${noun} indexed (${languages}):`),
  );
  const titles = el("ul", "titles");
  for (const d of documents.slice(0, 8)) titles.append(el("li", null, d.title));
  if (documents.length > 8) titles.append(el("li", "meta", `and ${documents.length - 8} more`));
  intro.append(titles);
  if (questions.length) {
    intro.append(el("p", "try", "Try:"));
    const list = el("div", "examples");
    for (const question of questions) {
      const button = el("button", "example", question);
      button.type = "button";
      button.addEventListener("click", () => ask(question));
      list.append(button);
    }
    intro.append(list);
  }
  intro.classList.toggle("hidden", history.children.length > 0);
}

async function ask(question) {
  intro.classList.add("hidden");
  const entry = el("li", "exchange");
  const answerBox = el("div", "answer", "Searching…");
  entry.append(el("p", "question", question), answerBox);
  history.append(entry);
  showAboveForm(entry);
  try {
    const response = await fetch("/v1/ask", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ question, collection, conversation_id: conversationId }),
    });
    const body = await response.json();
    if (response.status === 404 && conversationId) {
      conversationId = null; // expired on the server: this question starts a new one
      entry.remove();
      return ask(question);
    }
    if (!response.ok) {
      if (response.status === 401) keyInput.classList.remove("hidden");
      answerBox.replaceChildren(el("p", "error", body.error ? body.error.message : "Request failed."));
      return;
    }
    conversationId = body.conversation_id;
    newChat.classList.remove("hidden");
    if (body.context) {
      answerBox.before(el("p", "context", `Read with your earlier question: “${body.context.question}”`));
    }
    renderAnswer(body, answerBox);
  } catch (error) {
    answerBox.replaceChildren(el("p", "error", "The server could not be reached."));
  }
  showAboveForm(entry);
}

function showAboveForm(entry) {
  // The answer is taller than the "Searching…" line it replaced: bring its end into view,
  // above the input bar that stays fixed at the bottom.
  entry.style.scrollMarginBottom = form.offsetHeight + 16 + "px";
  entry.scrollIntoView({ block: "end" });
}

function startOver() {
  conversationId = null;
  history.replaceChildren();
  newChat.classList.add("hidden");
  intro.classList.toggle("hidden", intro.children.length === 0);
  input.focus();
}

function fillPicker(collections) {
  // Shown only when there is a choice; a key that may read one collection asks that one.
  const names = collections.map((c) => c.name);
  if (!names.includes(collection) && names.length) collection = names[0];
  picker.replaceChildren(
    ...collections.map((c) => {
      const option = el("option", null, `${c.name} (${c.documents})`);
      option.value = c.name;
      option.selected = c.name === collection;
      return option;
    }),
  );
  picker.classList.toggle("hidden", names.length < 2);
}

newChat.addEventListener("click", startOver);
picker.addEventListener("change", () => {
  collection = picker.value; // a conversation stays in its collection: start a new one
  startOver();
  showIntro();
});

keyInput.addEventListener("change", showIntro);
showIntro();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question) return;
  input.value = "";
  ask(question);
});
