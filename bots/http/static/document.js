// One document, whole, with a quote highlighted at the offsets in the address:
// /documents/{doc_id}#chars=START-END. The text goes in as text nodes, never as HTML.
"use strict";

function highlight(text, target) {
  const match = /^#chars=(\d+)-(\d+)$/.exec(window.location.hash);
  const start = match ? Number(match[1]) : -1;
  const end = match ? Number(match[2]) : -1;
  if (!(start >= 0 && start < end && end <= text.length)) {
    target.replaceChildren(document.createTextNode(text));
    return null;
  }
  const mark = document.createElement("mark");
  mark.textContent = text.slice(start, end);
  target.replaceChildren(
    document.createTextNode(text.slice(0, start)),
    mark,
    document.createTextNode(text.slice(end)),
  );
  return mark;
}

async function show() {
  const docId = decodeURIComponent(window.location.pathname.split("/").pop());
  const headers = {};
  const key = sessionStorage.getItem("verbatim-api-key");
  if (key) headers["Authorization"] = "Bearer " + key;
  const collection = new URLSearchParams(window.location.search).get("collection") || "default";
  const response = await fetch(
    "/v1/documents/" + encodeURIComponent(docId) + "?collection=" + encodeURIComponent(collection),
    { headers },
  );
  const body = await response.json();
  if (!response.ok) {
    document.getElementById("title").textContent = body.error ? body.error.message : "Not found.";
    return;
  }
  document.title = body.title + " · Verbatim";
  document.getElementById("title").textContent = body.title;
  document.getElementById("meta").textContent = [body.date, body.source, body.url]
    .filter(Boolean)
    .join(" · ");
  const mark = highlight(body.text, document.getElementById("text"));
  if (mark) mark.scrollIntoView({ block: "center" });
}

window.addEventListener("hashchange", show);
show();
