"""The RAG page: build a collection from uploaded files, ask it a question, measure its retrievers.

Each step calls what ``llmlab rag`` calls: ``rag.ingestion.ingest`` (new and changed files only),
``rag.answer.ask`` with the Workbench's loaded model held by ``wb.using`` (the answer cites numbered
sources; every excerpt it was given is listed with its retrieval score, cited or not), and a
``rag.evaluate.RetrievalEval`` run through ``runs.execute`` into the Workbench's store (so the Runs
page lists and re-opens it). Collections live next to the Workbench's store (``runs_common.rag_store``).

What it gives up: the local store only (no Chroma or Qdrant server), no reranker and no answer
scoring in the retrieval eval (the CLI has ``--rerank``, ``-m`` and ``--judge``). Uploaded files are
copied into one folder per collection under their own names, so a document's source is its file
name, and a changed file uploaded again replaces the old one.
"""

from __future__ import annotations

from pathlib import Path


def build(wb) -> None:
    import gradio as gr

    from ..rag.retrieval import RETRIEVERS

    gr.Markdown("### Collection\nUpload documents (.txt .md .html .pdf) to add them to a collection "
                "(created on first use; unchanged files are skipped).")
    with gr.Row():
        files = gr.File(label="documents", file_count="multiple", file_types=[".txt", ".md", ".html", ".pdf"],
                        elem_id="rag-files", min_width=260)
        with gr.Column(min_width=220):
            collection = gr.Dropdown(_names(wb), value="notes", allow_custom_value=True, label="collection",
                                     elem_id="rag-collection")
            ingest = gr.Button("Add to collection", variant="primary", elem_id="rag-ingest")
    ingested = gr.Markdown(elem_id="rag-ingest-report")

    gr.Markdown("### Ask")
    question = gr.Textbox(label="question", lines=2, elem_id="rag-question")
    with gr.Row():
        model = gr.Dropdown(wb.choices(), value=wb.default_model, allow_custom_value=True, label="model",
                            elem_id="rag-model", min_width=200)
        retriever = gr.Dropdown(list(RETRIEVERS), value="hybrid", label="retriever", elem_id="rag-retriever",
                                min_width=140)
        k = gr.Number(3, precision=0, minimum=1, label="excerpts", elem_id="rag-k", min_width=100)
        max_new = gr.Number(96, precision=0, minimum=1, label="max new tokens", elem_id="rag-max-tokens",
                            min_width=100)
    ask = gr.Button("Ask", variant="primary", elem_id="rag-ask")
    answer = gr.Markdown(elem_id="rag-answer")
    sources = gr.Dataframe(headers=SOURCE_COLUMNS,
                           label="sources (every excerpt the model was given, with its retrieval score: "
                                 "higher is better; hybrid's is a rank fusion, where only the order counts)",
                           interactive=False, wrap=True, elem_id="rag-sources")

    gr.Markdown("### Retrieval eval\nA JSONL file of questions, each with `relevant` (file names or chunk "
                "ids), `evidence` (text a relevant chunk contains) or `answer`.")
    with gr.Row():
        questions = gr.File(label="questions (.jsonl)", file_types=[".jsonl"], elem_id="rag-questions",
                            min_width=260)
        retrievers = gr.CheckboxGroup(list(RETRIEVERS), value=list(RETRIEVERS), label="retrievers",
                                      elem_id="rag-eval-retrievers", min_width=220)
    evaluate = gr.Button("Evaluate retrieval", variant="primary", elem_id="rag-eval")
    eval_report = gr.Markdown(elem_id="rag-eval-report")

    def do_ingest(files, collection, progress=gr.Progress()):
        from .runs_common import one_line

        with one_line():
            progress(None, desc="embedding")
            note = ingest_files(wb, files, collection)
            return note, gr.Dropdown(choices=_names(wb), value=collection)

    def do_ask(question, collection, model, retriever, k, max_new):
        from .runs_common import one_line

        with one_line():
            return ask_collection(wb, question, collection, model, retriever, k, max_new)

    def do_eval(questions, collection, retrievers, progress=gr.Progress()):
        from .runs_common import GradioBar, one_line

        with one_line():
            return retrieval_eval(wb, questions, collection, retrievers, GradioBar(progress))

    ingest.click(do_ingest, [files, collection], [ingested, collection], api_name="rag_ingest")
    ask.click(do_ask, [question, collection, model, retriever, k, max_new], [answer, sources],
              api_name="rag_ask")
    question.submit(do_ask, [question, collection, model, retriever, k, max_new], [answer, sources],
                    api_name=False)
    evaluate.click(do_eval, [questions, collection, retrievers], eval_report, api_name="rag_eval")


SOURCE_COLUMNS = ["source #", "cited", "score", "file", "page", "chars", "text"]


def _names(wb) -> list[str]:
    """The collections in the UI's store (none when it is not there yet)."""
    from ..rag.collection import collection_names
    from .runs_common import rag_store

    store = rag_store(wb)
    return collection_names(store) if store.exists() else []


def _collection(name) -> str:
    from ..errors import ConfigError

    name = (name or "").strip()
    if not name:
        raise ConfigError("name the collection")
    return name


def ingest_files(wb, files, collection) -> str:
    """Ingest the uploaded files; the ingest report's one-line summary (and any file that failed)."""
    import shutil

    from ..errors import RagError
    from ..rag.ingestion import ingest
    from .runs_common import rag_store, upload_paths

    paths = upload_paths(files)
    if not paths:
        raise RagError("upload at least one document (.txt .md .html .pdf)")
    name = _collection(collection)
    # gradio keeps each upload in a folder of its own; a copy under its own name in one folder per
    # collection makes the file name its source, and a changed file uploaded again replaces the old
    kept = rag_store(wb) / "uploads" / name
    kept.mkdir(parents=True, exist_ok=True)
    named = []
    for path in paths:
        shutil.copyfile(path, kept / path.name)
        named.append(kept / path.name)
    report = ingest(named, name, store=rag_store(wb))
    lines = [report.summary()]
    lines += [f"- could not ingest {reason}" for _, reason in report.failed]
    if report.failed and len(report.failed) == report.files:
        raise RagError(report.failed[0][1])
    return "\n".join(lines)


def ask_collection(wb, question, collection, model, retriever, k, max_new):
    """(the answer as markdown, a table of every excerpt given to the model with its score)."""
    import pandas as pd

    from ..errors import ConfigError
    from ..rag.answer import ask
    from ..rag.collection import Collection
    from .runs_common import rag_store

    if not (question or "").strip():
        raise ConfigError("type a question")
    store = rag_store(wb)
    name = _collection(collection)
    Collection.open(name, store)  # an unknown collection fails before the model loads
    with wb.using(model) as m:
        answer = ask(question.strip(), name, model=m, k=int(k or 3), retriever=retriever, store=store,
                     max_new_tokens=int(max_new or 96), temperature=0.0)
    notes = []
    if answer.dropped:
        notes.append(f"{answer.dropped} retrieved excerpts left out: they did not fit the context window.")
    if answer.invalid:
        notes.append("dropped citations that point to no source: "
                     + ", ".join(f"[{n}]" for n in answer.invalid))
    if not answer.citations:
        notes.append("The answer cites no source; the excerpts it was given are listed below.")
    cited = set(answer.citations)
    rows = [{"source #": n, "cited": n in cited, "score": round(hit.score, 4), "file": Path(hit.source).name,
             "page": hit.page, "chars": f"{hit.start}-{hit.end}", "text": " ".join(hit.text.split())}
            for n, hit in enumerate(answer.context, 1)]
    text = answer.text.strip() + ("\n\n" + "\n\n".join(f"*{n}*" for n in notes) if notes else "")
    return text, pd.DataFrame(rows, columns=SOURCE_COLUMNS)


def retrieval_eval(wb, questions, collection, retrievers, bar=None) -> str:
    """Run a retrieval evaluation into the store; its report (the CLI's tables) as markdown."""
    from ..errors import ConfigError, DataError
    from ..rag.collection import Collection
    from ..rag.evaluate import RetrievalEval, read_questions, tables
    from ..runs import execute
    from .runs_common import rag_store, upload_path

    path = upload_path(questions)
    if path is None:
        raise DataError("upload a questions file (.jsonl)")
    if not retrievers:
        raise ConfigError("choose at least one retriever")
    store = rag_store(wb)
    name = _collection(collection)
    items = read_questions(path)
    Collection.open(name, store)
    kind = RetrievalEval(items, name, store, list(retrievers), str(path))
    if not any(kind.qrels.values()):
        raise DataError(f"none of the {len(items)} questions has a relevant chunk in collection {name}: "
                        "nothing to score")
    outcome = execute(kind, wb.store, progress=bar)
    parts = [f"**{t.title}**\n\n{t.to_markdown()}" for t in tables(outcome.summary, kind.header())]
    unanswerable = outcome.summary.get("unanswerable") or []
    if unanswerable:
        parts.append(f"{len(unanswerable)} question(s) have no relevant chunk and are not scored: "
                     + ", ".join(unanswerable))
    parts.append(f"Stored as rag run {outcome.run_id} (the Runs page re-opens it).")
    return "\n\n".join(parts)
