"""``llmlab rag``: ingest files into a collection, retrieve chunks, answer questions with citations, measure.

    llmlab rag ingest notes/ paper.pdf --collection notes        # new and changed files only
    llmlab rag ingest notes/ --collection notes --prune          # also drop files that are gone
    llmlab rag ingest notes/ --collection notes --embedder st/DIR --reembed   # another embedder
    llmlab rag retrieve "what is BM25?" --collection notes --retriever hybrid -k 5
    llmlab rag retrieve "what is BM25?" -c notes -r hybrid+rerank --rerank smollm2   # or ce/DIR
    llmlab rag neighbours "a sentence" -c notes                  # nearest chunks by cosine
    llmlab rag ask "what is BM25?" -m smollm2 --collection notes
    llmlab rag eval questions.jsonl --collection notes --out rag-eval    # every retriever, measured
    llmlab rag eval questions.jsonl -c notes -m smollm2 --judge smollm2  # and the answers

Every command takes ``--store`` (a directory, default the data directory's ``rag/``;
``chroma+http://HOST:PORT``; ``qdrant:DIR``; ``qdrant+http://HOST:PORT``). chromadb, bm25s, pypdf
and the models are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .foundation import MaxNew, NCtx, Threads, _load
from .main import BalanceOpt, ConcurrencyOpt, RpmOpt, TpmOpt, app, err

rag_app = typer.Typer(help="Retrieval-augmented generation: ingest, retrieve, ask with citations.",
                      no_args_is_help=True)
app.add_typer(rag_app, name="rag")

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="where collections live: a directory (default: data dir/rag), chroma+http://HOST:PORT "
    "(a Chroma server), qdrant:DIR or qdrant+http://HOST:PORT")]
RetrieverOpt = Annotated[str, typer.Option("--retriever", "-r", help="dense | bm25 | hybrid | hybrid+rerank")]
TopK = Annotated[int, typer.Option("-k", "--top-k", help="chunks to retrieve")]
RerankOpt = Annotated[str | None, typer.Option(
    "--rerank", help="reranker for hybrid+rerank: an llmlab model that can score (yes/no judge), or "
    "ce/DIR (a sentence-transformers cross-encoder)")]


def _reranker(spec: str | None, n_ctx=None, threads=None, loaded=None):
    """The reranker named by --rerank (None when not given); an llmlab model loads with the command's
    --n-ctx/--threads, or is the copy already loaded under that name."""
    if spec is None:
        return None
    from ..rag.rerank import LogprobReranker, load_reranker

    if spec.startswith("ce/"):
        return load_reranker(spec)
    model = loaded[spec] if loaded and spec in loaded else _load(spec, n_ctx, threads=threads)
    return LogprobReranker(model)


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
    from ..rag.ingestion import ingest as run_ingest

    try:
        report = run_ingest(paths, collection, embedder=embedder, store=store, chunk_size=chunk_size,
                            overlap=overlap, prune=prune, reembed=reembed, progress=True)
    except KeyboardInterrupt as exc:  # what is stored stays consistent; the message says what to redo
        err(str(exc) or f"interrupted before anything was written to collection {collection}; run the "
            "same command again")
        raise typer.Exit(130) from None
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
    rerank: RerankOpt = None,
    n_ctx: NCtx = None,
    threads: Threads = None,
):
    """The best chunks for QUERY, ranked, with source, page, character offsets and score."""
    from ..rag.collection import Collection
    from ..rag.retrieval import check_retriever
    from ..rag.retrieval import retrieve as run_retrieve

    check_retriever(retriever, rerank)
    Collection.open(collection, store)
    hits = run_retrieve(query, collection, retriever=retriever, k=k, store=store, embedder=embedder,
                        rerank=_reranker(rerank, n_ctx, threads) if retriever.endswith("rerank") else None)
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
    rerank: RerankOpt = None,
):
    """Answer QUESTION from the collection's chunks, streamed, citing numbered sources."""
    import sys

    from ..rag.answer import ask as run_ask
    from ..rag.collection import Collection
    from ..rag.retrieval import check_retriever

    check_retriever(retriever, rerank)
    Collection.open(collection, store)
    m = _load(model, n_ctx, threads=threads)
    reranker = _reranker(rerank, n_ctx, threads, {model: m}) if retriever.endswith("rerank") else None

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    answer = run_ask(question, collection, model=m, k=k, retriever=retriever, store=store,
                     max_new_tokens=max_new_tokens or 256, temperature=0.0, on_text=write, rerank=reranker)
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
    questions: Annotated[Path, typer.Argument(help="JSONL: question, and relevant, evidence and/or answer")],
    collection: CollectionOpt,
    retriever: Annotated[list[str] | None, typer.Option(
        "--retriever", "-r", help="retrievers to compare (repeatable; default: dense, bm25, hybrid, "
        "and hybrid+rerank with --rerank)")] = None,
    store: StoreOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write report.md, results.json, "
                                             "per_question.csv (and answers.csv) here")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="a new run, not resuming a stored one")] = False,
    rerank: RerankOpt = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="also answer every question with this model and score the answers")] = None,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="a model that checks each answer's statements against its cited sources")] = None,
    answer_retriever: Annotated[str, typer.Option(
        "--answer-retriever", help="the retriever whose chunks the answers use")] = "hybrid",
    k: Annotated[int, typer.Option("-k", "--top-k", help="chunks given to the answering model")] = 5,
    max_new_tokens: MaxNew = None,
    n_ctx: NCtx = None,
    threads: Threads = None,
    concurrency: ConcurrencyOpt = 1,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    balance: BalanceOpt = None,
):
    """hit@k, MRR@10, nDCG@10 and recall@10 of each retriever on your questions, with 95% intervals
    and paired tests; with -m, the answers' exact match, F1, containment, similarity to the reference
    and (with --judge) faithfulness to their sources. Stored as a run (resumes after Ctrl-C, `llmlab
    runs show ID` re-opens it)."""
    import json

    from rich.console import Console

    from ..checks import whole_number
    from ..config import prepare_out
    from ..errors import ConfigError, DataError
    from ..models.registry import check_options, load_model, load_options
    from ..rag.collection import Collection
    from ..rag.evaluate import Answering, RetrievalEval, read_questions, tables
    from ..rag.retrieval import RERANKED, RETRIEVERS, check_retriever
    from ..runs import execute, progress_bar
    from ..runs.runner import check_concurrency
    from ..store import Store

    retrievers = retriever or [*RETRIEVERS, *([RERANKED] if rerank else [])]
    for r in [*retrievers, answer_retriever]:
        check_retriever(r, rerank)
    if judge and not model:
        raise ConfigError("--judge checks answers: give the answering model with -m MODEL too")
    whole_number("-k", k)
    whole_number("--concurrency", concurrency)
    items = read_questions(questions)
    Collection.open(collection, store)
    if out is not None:
        prepare_out(out)
    options = load_options(n_ctx=n_ctx, threads=threads, rpm=rpm, tpm=tpm, balance=balance)
    for name in dict.fromkeys(m for m in (model, judge) if m):  # a bad option fails before anything loads
        check_options(name, options)
    loaded = {}
    if model:
        loaded[model] = load_model(model, **options)
    if judge:
        loaded.setdefault(judge, load_model(judge, **options))
    check_concurrency(concurrency, loaded.values())
    needs_rerank = RERANKED in retrievers or (model and answer_retriever == RERANKED)
    answering = Answering(loaded[model], answer_retriever, k, max_new_tokens or 128,
                          loaded.get(judge)) if model else None
    kind = RetrievalEval(items, collection, store, retrievers, str(questions),
                         rerank=_reranker(rerank, n_ctx, threads, loaded) if needs_rerank else None,
                         answering=answering)
    if not any(kind.qrels.values()) and not answering:
        raise DataError(f"none of the {len(items)} questions has a relevant chunk in collection {collection} "
                        "(no evidence text is in any chunk, no relevant id names one): nothing to score")
    db = Store.open()
    try:
        with progress_bar(transient=True) as bar:
            outcome = execute(kind, db, fresh=fresh, progress=bar, concurrency=concurrency)
    except KeyboardInterrupt as exc:  # a RunInterrupted says what is stored and how to resume
        err(str(exc) or "interrupted")
        raise typer.Exit(130) from None
    finally:
        db.close()
    console = Console()
    report = tables(outcome.summary, kind.header())
    for table in report:
        console.print(table.to_rich())
    from ..tally import cost_section, markdown_with_cost, print_cost

    cost, cost_notes, spent = cost_section(outcome.results.values())
    print_cost(cost, cost_notes, console)
    if outcome.summary["unanswerable"]:
        err(f"{len(outcome.summary['unanswerable'])} question(s) have no relevant chunk in {collection} and "
            f"are not scored: {', '.join(outcome.summary['unanswerable'])}")
    if out is not None:
        (out / "results.json").write_text(json.dumps({"header": kind.header(), "summary": outcome.summary,
                                                      "cost": {"models": spent, "notes": cost_notes}},
                                                     indent=2), encoding="utf-8")
        (out / "report.md").write_text(markdown_with_cost(report, cost, cost_notes), encoding="utf-8")
        rows = [[q, r, *(m["per_question"][k].get(q) for k in m["per_question"])]
                for r, m in outcome.summary["retrievers"].items() for q in m["per_question"]["hit@5"]]
        from ..rag.evaluate import METRICS
        from ..runs import Table

        (out / "per_question.csv").write_text(Table(["question", "retriever", *METRICS], rows).to_csv(),
                                              encoding="utf-8")
        if answering:
            from ..rag.evaluate import ANSWER_METRICS

            rows = [[r["id"], r["answer"], " ".join(f"[{n}]" for n in r["citations"]),
                     *(r["scores"].get(m) for m in ANSWER_METRICS)]
                    for r in outcome.results.values() if r["retriever"] == "answer"]
            (out / "answers.csv").write_text(Table(["question", "answer", "citations", *ANSWER_METRICS],
                                                   rows).to_csv(), encoding="utf-8")
    err(f"stored as rag run {outcome.run_id} (`llmlab runs show {outcome.run_id}` re-opens it)"
        + (f"; {outcome.resumed} units resumed from it" if outcome.resumed else ""))


@rag_app.command()
def neighbours(
    text: Annotated[str, typer.Argument(help="a sentence")],
    collection: CollectionOpt,
    k: TopK = 5,
    store: StoreOpt = None,
):
    """The chunks of a collection nearest to TEXT by the cosine similarity of their embeddings."""
    from ..rag.retrieval import neighbours as nearest

    hits = nearest(text, collection, k=k, store=store)
    if not hits:
        err(f"collection {collection} is empty")
    for hit in hits:
        print(f"{hit.rank}. cosine {hit.score:.3f}  {hit.where()}")
        body = " ".join(hit.text.split())
        print(f"   {body[:300]}{'...' if len(body) > 300 else ''}")


@rag_app.command("collections")
def collections(store: StoreOpt = None):
    """The collections in the store: name, embedder, documents."""
    from ..rag.collection import Collection, collection_names
    from ..rag.stores import parse_store

    parse_store(store).connect()  # a server that is down says so, rather than listing stale records
    names = collection_names(store)
    if not names:
        err(f"no collections in {parse_store(store).describe()}")
    for name in names:
        coll = Collection.open(name, store)
        docs = coll.manifest()["documents"]
        print(f"{name}\t{coll.meta['embedder']}\t{len(docs)} documents")
