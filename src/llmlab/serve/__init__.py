"""``llmlab serve``: local models behind the OpenAI-compatible and the Ollama-compatible HTTP APIs.

    models.py      served models, aliases, one bounded queue and worker threads per model
    engine.py      continuous batching of concurrent requests in one llama.cpp context
    app.py         the FastAPI app: API-key and body-size guard, errors, /props and /tokenize
    openai_api.py  /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings
    ollama_api.py  /api/version, /api/tags, /api/show, /api/chat, /api/generate, /api/embed
    rag.py         rag/COLLECTION@MODEL: chat answers grounded in a collection, sources in the response

FastAPI, uvicorn and llama.cpp are imported only when a server is built, never by ``import llmlab``.
"""
