"""``llmlab rag``: ingest files into a collection, retrieve chunks, answer questions with citations.

    llmlab rag ingest notes/ paper.pdf --collection notes        # new and changed files only
    llmlab rag ingest notes/ --collection notes --prune          # also drop files that are gone
    llmlab rag ingest notes/ --collection notes --embedder st/DIR --reembed   # another embedder
    llmlab rag retrieve "what is BM25?" --collection notes --retriever hybrid -k 5
    llmlab rag ask "what is BM25?" -m smollm2 --collection notes

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
