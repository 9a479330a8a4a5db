"""One system of the peer benchmark, in its own process: build an index over the SciFact corpus,
answer every query (top 10 documents), report timings and peak memory as JSON.

    python bench/peer_run.py SYSTEM DATA_DIR MODEL_PATH OUT_JSON

SYSTEM is `langchain`, `txtai`, `verbatim-torch`, `verbatim-onnx` (ONNX Runtime) or
`verbatim-openvino` (the default). The peers run in their own
virtual environment (`make bench-peers` creates it), so the product never depends on them; this
file imports nothing of Verbatim unless it is measuring Verbatim.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOP_K = 10
Search = Callable[[str], list[str]]  # question -> document ids, best first


def main() -> None:
    system, data, model, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    os.environ["HF_HUB_OFFLINE"] = "1"
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (data / "queries.jsonl").open(encoding="utf-8")]
    builders: dict[str, Callable[[list[dict[str, str]], str], dict[str, Search]]] = {
        "langchain": _langchain,
        "txtai": _txtai,
        "verbatim-torch": lambda c, m: _verbatim(c, "torch"),
        "verbatim-onnx": lambda c, m: _verbatim(c, "onnx"),
        "verbatim-openvino": lambda c, m: _verbatim(c, "openvino"),
    }
    started = time.perf_counter()
    searches = builders[system](corpus, model)
    build_s = time.perf_counter() - started
    result: dict[str, Any] = {"system": system, "build_s": round(build_s, 2), "variants": {}}
    for variant, search in searches.items():
        search(queries[0]["text"])  # warm-up: first-call allocations are not query latency
        timings, rankings = [], {}
        for query in queries:
            begun = time.perf_counter()
            rankings[query["_id"]] = search(query["text"])
            timings.append((time.perf_counter() - begun) * 1000)
        result["variants"][variant] = {"query_ms": timings, "rankings": rankings}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.write_text(json.dumps(result))


def _text(doc: dict[str, str]) -> str:
    return f"{doc.get('title', '')}\n\n{doc['text']}".strip()


def _langchain(corpus: list[dict[str, str]], model: str) -> dict[str, Search]:
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    embeddings = HuggingFaceEmbeddings(
        model_name=model, encode_kwargs={"normalize_embeddings": True, "batch_size": 32}
    )
    documents = [Document(page_content=_text(d), metadata={"id": d["_id"]}) for d in corpus]
    store = FAISS.from_documents(documents, embeddings)
    retriever = store.as_retriever(search_kwargs={"k": TOP_K})

    def search(question: str) -> list[str]:
        return [d.metadata["id"] for d in retriever.invoke(question)]

    return {"langchain": search}


def _txtai(corpus: list[dict[str, str]], model: str) -> dict[str, Search]:
    from txtai import Embeddings

    embeddings = Embeddings(path=model, content=False, backend="faiss")
    embeddings.index((d["_id"], _text(d), None) for d in corpus)

    def search(question: str) -> list[str]:
        return [str(doc_id) for doc_id, _ in embeddings.search(question, TOP_K)]

    return {"txtai": search}


def _verbatim(corpus: list[dict[str, str]], backend: str) -> dict[str, Search]:
    from qa.engine import Verbatim
    from qa.evaluation.beir import write_corpus
    from qa.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="verbatim-peers-"))
    docs = home / "docs"
    source = home / "beir"
    source.mkdir()
    with (source / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc in corpus:
            out.write(json.dumps(doc) + "\n")
    write_corpus(source, docs)
    engine = Verbatim(Settings(home=home, encoder_backend=backend))
    engine.build_index([docs])

    dense = Verbatim(
        engine.settings.model_copy(update={"mode": "dense", "reranker": "none"}), engine.encoder
    )

    def searcher(system: Verbatim) -> Search:
        def search(question: str) -> list[str]:
            # Enough passages for ten distinct documents (a document holds several chunks).
            seen: list[str] = []
            for passage in system.search(question, 40).passages:
                if passage.doc_id not in seen:
                    seen.append(passage.doc_id)
            return seen[:TOP_K]

        return search

    return {
        f"verbatim-{backend}-dense": searcher(dense),
        f"verbatim-{backend}-default": searcher(engine),
    }


if __name__ == "__main__":
    main()
