"""Serving a run: an OpenAI-compatible HTTP server (``tunelab serve``) and a terminal chat
(``tunelab chat``) over one engine that batches requests for many adapters of one base.

Modules: engine.py (the models by name, running a batch), jobs.py (a request's rows, stop
strings, streamed deltas), worker.py (the batching queue and its thread), app.py (the FastAPI
routes), schemas.py / responses.py (OpenAI's request and response shapes), gate.py (API key,
body size, metrics per request), metrics.py (Prometheus text), server.py (uvicorn, the socket,
graceful shutdown), chat.py, commands.py. FastAPI and uvicorn are the ``serve`` extra.
"""
