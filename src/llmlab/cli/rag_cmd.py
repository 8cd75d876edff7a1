"""``llmlab rag``: ingest files into a collection, retrieve chunks, answer questions with citations.

    llmlab rag ingest notes/ paper.pdf --collection notes        # new and changed files only
    llmlab rag ingest notes/ --collection notes --prune          # also drop files that are gone
    llmlab rag ingest notes/ --collection notes --embedder st/DIR --reembed   # another embedder
    llmlab rag retrieve "what is BM25?" --collection notes --retriever hybrid -k 5
    llmlab rag ask "what is BM25?" -m smollm2 --collection notes
    llmlab rag eval questions.jsonl --collection notes --out rag-eval    # every retriever, measured

Every command takes ``--store DIR`` (default: the data directory's ``rag/``). chromadb, bm25s and
pypdf are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .foundation import MaxNew, NCtx, Threads, _load
from .main import app, err

rag_app = typer.Typer(help="Retrieval-augmented generation: ingest, retrieve, ask with citations.",
                      no_args_is_help=True)
app.add_typer(rag_app, name="rag")

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="store directory (default: data dir/rag)")]
RetrieverOpt = Annotated[str, typer.Option("--retriever", "-r", help="dense | bm25 | hybrid")]
TopK = Annotated[int, typer.Option("-k", "--top-k", help="chunks to retrieve")]


@rag_app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (.txt .md .html .pdf)")],
    collection: CollectionOpt,
    embedder: Annotated[str, typer.Option("--embedder", "-e", help="embedding model")] = "minilm",
    store: StoreOpt = None,
    chunk_size: Annotated[int, typer.Option(help="tokens per chunk (the embedder's own)")] = 200,
    overlap: Annotated[int, typer.Option(help="tokens shared by neighbouring chunks")] = 30,
    prune: Annotated[bool, typer.Option("--prune", help="remove documents whose file is gone")] = False,
    reembed: Annotated[bool, typer.Option(
        "--reembed", help="empty the collection and embed these files with --embedder")] = False,
):
    """Add new and changed files to a collection (created on first use); unchanged files are skipped."""
    from ..errors import RagError
    from ..rag.ingest import ingest as run_ingest

    report = run_ingest(paths, collection, embedder=embedder, store=store, chunk_size=chunk_size,
                        overlap=overlap, prune=prune, reembed=reembed, progress=True)
    print(report.summary(), flush=True)
    if len(report.failed) == 1:
        raise RagError(report.failed[0][1])
    if report.failed:
        for _, reason in report.failed:
            err(f"skipped {reason}")
        raise RagError(f"{len(report.failed)} of {report.files} files could not be ingested (listed "
                       "above); the others are stored")


def _print_hits(hits) -> None:
    for hit in hits:
        print(f"{hit.rank}. [{hit.score:.4f}] {hit.where()}")
        text = " ".join(hit.text.split())
        print(f"   {text[:300]}{'...' if len(text) > 300 else ''}")


@rag_app.command()
def retrieve(
    query: Annotated[str, typer.Argument(help="what to look for")],
    collection: CollectionOpt,
    retriever: RetrieverOpt = "hybrid",
    k: TopK = 5,
    store: StoreOpt = None,
    embedder: Annotated[str | None, typer.Option(
        "--embedder", "-e", help="must be the collection's (default: the one it records)")] = None,
):
    """The best chunks for QUERY, ranked, with source, page, character offsets and score."""
    from ..rag.retrieve import retrieve as run_retrieve

    hits = run_retrieve(query, collection, retriever=retriever, k=k, store=store, embedder=embedder)
    if not hits:
        err(f"nothing in collection {collection} matches")
    _print_hits(hits)


@rag_app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    collection: CollectionOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="model that answers")] = "smollm2",
    k: TopK = 5,
    retriever: RetrieverOpt = "hybrid",
    store: StoreOpt = None,
    max_new_tokens: MaxNew = None,
    n_ctx: NCtx = None,
    threads: Threads = None,
):
    """Answer QUESTION from the collection's chunks, streamed, citing numbered sources."""
    import sys

    from ..rag.answer import ask as run_ask

    m = _load(model, n_ctx, threads=threads)

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    answer = run_ask(question, collection, model=m, k=k, retriever=retriever, store=store,
                     max_new_tokens=max_new_tokens or 256, temperature=0.0, on_text=write)
    print(flush=True)
    if answer.dropped:
        err(f"{answer.dropped} of {answer.dropped + len(answer.context)} retrieved chunks left out: they did "
            f"not fit in {m.info.name}'s context window")
    if answer.invalid:
        err(f"dropped {len(answer.invalid)} citation(s) that point to no source: "
            + ", ".join(f"[{n}]" for n in answer.invalid))
    print("\nSources:" if answer.sources else "\nSources: (the answer cites none; retrieved:)")
    shown = answer.sources or list(enumerate(answer.context, 1))
    for n, hit in shown:
        print(f"[{n}] {hit.source}" + (f", page {hit.page}" if hit.page is not None else "")
              + f", chars {hit.start}-{hit.end}")


@rag_app.command("eval")
def evaluate(
    questions: Annotated[Path, typer.Argument(help="JSONL: question, and relevant and/or evidence")],
    collection: CollectionOpt,
    retriever: Annotated[list[str] | None, typer.Option(
        "--retriever", "-r", help="retrievers to compare (repeatable; default: all)")] = None,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write report.md, results.json, "
                                             "per_question.csv here")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="a new run, not resuming a stored one")] = False,
):
    """hit@k, MRR@10, nDCG@10 and recall@10 of each retriever on your questions, with 95% intervals
    and paired tests; stored as a run (resumes after Ctrl-C, `llmlab runs show ID` re-opens it)."""
    import json

    from rich.console import Console

    from ..checks import did_you_mean
    from ..config import prepare_out
    from ..errors import ConfigError
    from ..rag.evaluate import RetrievalEval, read_questions, tables
    from ..rag.retrieve import RETRIEVERS
    from ..runs import execute, progress_bar
    from ..store import Store

    for r in retriever or []:
        if r not in RETRIEVERS:
            raise ConfigError(f"unknown retriever {r!r}{did_you_mean(r, RETRIEVERS)}; "
                              f"choose from {', '.join(RETRIEVERS)}")
    if out is not None:
        prepare_out(out)
    kind = RetrievalEval(read_questions(questions), collection, store, retriever or RETRIEVERS,
                         str(questions))
    db = Store.open()
    try:
        with progress_bar(transient=True) as bar:
            outcome = execute(kind, db, fresh=fresh, progress=bar)
    finally:
        db.close()
    console = Console()
    main, tests = tables(outcome.summary, kind.header())
    console.print(main.to_rich())
    console.print(tests.to_rich())
    if outcome.summary["unanswerable"]:
        err(f"{len(outcome.summary['unanswerable'])} question(s) have no relevant chunk in {collection} and "
            f"are not scored: {', '.join(outcome.summary['unanswerable'])}")
    if out is not None:
        (out / "results.json").write_text(json.dumps({"header": kind.header(), "summary": outcome.summary},
                                                     indent=2), encoding="utf-8")
        (out / "report.md").write_text(main.to_markdown() + "\n\n" + tests.to_markdown() + "\n",
                                       encoding="utf-8")
        rows = [[q, r, *(m["per_question"][k].get(q) for k in m["per_question"])]
                for r, m in outcome.summary["retrievers"].items() for q in m["per_question"]["hit@5"]]
        from ..rag.evaluate import METRICS
        from ..runs import Table

        (out / "per_question.csv").write_text(Table(["question", "retriever", *METRICS], rows).to_csv(),
                                              encoding="utf-8")
    err(f"stored as rag run {outcome.run_id} (`llmlab runs show {outcome.run_id}` re-opens it)"
        + (f"; {outcome.resumed} units resumed from it" if outcome.resumed else ""))


@rag_app.command("collections")
def collections(store: StoreOpt = None):
    """The collections in the store: name, embedder, documents."""
    from ..rag.collection import Collection, collection_names

    names = collection_names(store)
    if not names:
        err(f"no collections in {Collection('x', store).root}")
    for name in names:
        coll = Collection.open(name, store)
        docs = coll.manifest()["documents"]
        print(f"{name}\t{coll.meta['embedder']}\t{len(docs)} documents")
