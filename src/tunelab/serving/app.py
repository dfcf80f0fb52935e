"""The OpenAI-compatible HTTP API (FastAPI): models, completions, chat, classification, health.

Each request is checked (size, JSON, types, model, limits) and answered with OpenAI's error
shape on any problem; a valid one becomes a :class:`Job` for the batching worker, whose events
come back through an asyncio queue, streamed as server-sent events or gathered into one
answer. A request whose client goes away (streamed or not) is cancelled: its rows stop at the
next step. Imported only once ``fastapi`` is known to be installed (``tunelab.serving.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from tunelab.data.formats import InvalidRow
from tunelab.decoding import Sampling
from tunelab.inference import encode_messages, encode_text
from tunelab.serving.engine import Engine, Slot
from tunelab.serving.gate import Gate
from tunelab.serving.images import image_prompt, reads_images
from tunelab.serving.jobs import Classified, Delta, Event, Failed, Finish, Job
from tunelab.serving.metrics import Metrics
from tunelab.serving.responses import CHAT, COMPLETION, DONE, Chunks, full_response, new_id
from tunelab.serving.schemas import (
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    Sampled,
    error_body,
    validation_problem,
)
from tunelab.serving.worker import QueueFull, Worker

Body = TypeVar("Body", bound=BaseModel)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and defaults of a server."""

    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_tokens: int = 512  # the most new tokens one choice may ask for
    default_max_tokens: int = 64
    max_queue: int = 64  # queued requests before new ones get 503
    max_batch: int = 16  # rows decoded together
    max_rows: int = 16  # prompts x n of one request
    max_inputs: int = 64  # texts of one classification request


class ApiError(Exception):
    """A request the server refuses: status, message, and OpenAI's param/code."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        headers = {"retry-after": "1"} if self.status == 503 else None
        body = error_body(self.message, kind, self.param, self.code)
        return JSONResponse(body, status_code=self.status, headers=headers)


def make_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``engine``'s models (its worker starts with the app)."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    worker = Worker(engine, settings.max_queue, settings.max_batch, on_batch=metrics.batch)
    metrics.gauges = {
        "tunelab_queue_length": lambda: worker.waiting,
        "tunelab_batch_running_rows": lambda: worker.busy,
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        await asyncio.to_thread(worker.stop)  # in-flight and queued jobs finish first

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.models = list(engine.slots)
    app.add_middleware(
        Gate, api_key=settings.api_key, max_body=settings.max_body_bytes, metrics=metrics
    )
    app.add_exception_handler(ApiError, lambda _, exc: exc.response())
    app.add_exception_handler(HTTPException, _http_error)
    api = _Api(engine, settings, worker, metrics)

    app.get("/health")(api.health)
    app.get("/metrics")(api.metrics_text)
    app.get("/v1/models")(api.models)
    app.post("/v1/chat/completions")(api.chat)
    app.post("/v1/completions")(api.completions)
    app.post("/v1/classify")(api.classify)
    return app


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    body = error_body(str(exc.detail), param=None, code=code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


class _Api:
    """The route handlers over one engine, worker and settings."""

    def __init__(self, engine: Engine, settings: ServeSettings, worker: Worker, metrics: Metrics):
        self.engine, self.settings, self.worker, self.metrics = engine, settings, worker, metrics

    async def health(self) -> dict[str, Any]:
        alive = self.worker.thread.is_alive()
        return {"status": "ok" if alive else "stopped", "models": list(self.engine.slots)}

    async def metrics_text(self) -> PlainTextResponse:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self) -> dict[str, Any]:
        data = [
            {
                "id": slot.name,
                "object": "model",
                "created": 0,
                "owned_by": "tunelab",
                "root": slot.source,
                "parent": slot.parent,
                "task": slot.task,
            }
            for slot in self.engine.slots.values()
        ]
        return {"object": "list", "data": data}

    async def chat(self, request: Request) -> Any:
        body = await self._body(request, ChatRequest)
        slot = self._slot(body.model, generative=True)
        if slot.loaded.rendering.format == "text":
            raise ApiError(
                400,
                f"model {body.model!r} was trained on plain text (data.format: text), not "
                "conversations; use POST /v1/completions",
                "model",
            )
        urls: list[str] = []
        messages = [{"role": m.role, "content": m.text} for m in body.messages]
        try:
            if reads_images(slot.loaded):
                prompt, urls = image_prompt(slot.loaded, body.messages)
            elif any(m.images for m in body.messages):
                raise InvalidRow(
                    f"model {body.model!r} reads text only; image parts need an image_chat model"
                )
            else:
                prompt = encode_messages(slot.loaded, messages)
        except InvalidRow as exc:
            raise ApiError(400, f"messages: {exc}", "messages") from None
        return await self._generate(request, CHAT, body, slot, [prompt], urls)

    async def completions(self, request: Request) -> Any:
        body = await self._body(request, CompletionRequest)
        slot = self._slot(body.model, generative=True)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        prompts = [encode_text(slot.loaded, text) for text in texts]
        return await self._generate(request, COMPLETION, body, slot, prompts)

    async def classify(self, request: Request) -> Any:
        body = await self._body(request, ClassifyRequest)
        slot = self._slot(body.model, generative=False)
        items = [body.input] if isinstance(body.input, str) else body.input
        if len(items) > self.settings.max_inputs:
            message = f"{len(items)} inputs; at most {self.settings.max_inputs} per request"
            raise ApiError(400, message, "input")
        inputs = [x if isinstance(x, str) else x.model_dump() for x in items]
        tok, limit = slot.loaded.tokenizer, slot.limit
        counts = []
        for i, item in enumerate(inputs):
            text, pair = (
                (item, None) if isinstance(item, str) else (item["text"], item["text_pair"])
            )
            counts.append(len(tok(text, pair)["input_ids"]))
            if limit is not None and counts[-1] > limit:
                raise ApiError(
                    400,
                    f"input {i} has {counts[-1]} tokens; the model takes at most {limit}",
                    "input",
                    "context_length_exceeded",
                )
        events = self._events()
        job = Job(slot, "classify", events.sink, inputs=inputs)
        self._submit(job)
        try:
            event = await events.queue.get()
        finally:
            job.cancelled.set()
        if isinstance(event, Failed):
            raise ApiError(500, event.message)
        assert isinstance(event, Classified)
        data = [{"index": i, **row} for i, row in enumerate(event.results)]
        self.metrics.count_tokens(sum(counts), 0)
        usage = {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
        return {
            "id": new_id("classify"),
            "object": "classification",
            "model": body.model,
            "data": data,
            "usage": usage,
        }

    async def _body(self, request: Request, model: type[Body]) -> Body:
        """The request body read (within the size limit), parsed and validated."""
        size, chunks = 0, []
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                limit = self.settings.max_body_bytes
                raise ApiError(
                    413, f"request body over the {limit}-byte limit", None, "body_too_large"
                )
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as exc:
            raise ApiError(
                400, f"malformed JSON body: {str(exc)[:200]}", None, "invalid_json"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(400, f"the body must be a JSON object, not {type(data).__name__}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            message, param = validation_problem(exc)
            raise ApiError(400, message, param) from None

    def _slot(self, name: str, generative: bool) -> Slot:
        slot = self.engine.slot(name)
        if slot is None:
            known = ", ".join(self.engine.slots)
            raise ApiError(
                404, f"model {name!r} does not exist; served: {known}", "model", "model_not_found"
            )
        if generative and slot.task == "classification":
            raise ApiError(400, f"model {name!r} is a classifier; use POST /v1/classify", "model")
        if not generative and slot.task != "classification":
            raise ApiError(400, f"model {name!r} generates text; use /v1/chat/completions", "model")
        return slot

    def _events(self) -> _Events:
        return _Events(asyncio.get_running_loop())

    def _submit(self, job: Job) -> None:
        try:
            self.worker.submit(job)
        except QueueFull:
            raise ApiError(
                503, "the server is at capacity; retry shortly", None, "server_overloaded"
            ) from None

    async def _generate(
        self,
        request: Request,
        kind: str,
        body: Sampled,
        slot: Slot,
        prompts: list[list[int]],
        images: list[str] | None = None,
    ) -> Any:
        max_tokens = (
            body.max_completion_tokens or body.max_tokens or self.settings.default_max_tokens
        )
        if max_tokens > self.settings.max_tokens:
            message = (
                f"max_tokens {max_tokens} is over this server's limit of {self.settings.max_tokens}"
            )
            raise ApiError(400, message, "max_tokens")
        if len(prompts) * body.n > self.settings.max_rows:
            message = (
                f"{len(prompts)} prompt(s) x n={body.n} is over {self.settings.max_rows} choices"
            )
            raise ApiError(400, message, "n")
        param = "messages" if kind == CHAT else "prompt"
        for i, prompt in enumerate(prompts):
            self._check_room(slot, prompt, max_tokens, i, param)
        temperature = 1.0 if body.temperature is None else body.temperature
        sampling = Sampling(temperature, 1.0 if body.top_p is None else body.top_p, body.seed)
        events = self._events()
        job = Job(
            slot,
            "generate",
            events.sink,
            prompts,
            n=body.n,
            max_tokens=max_tokens,
            sampling=sampling,
            stop=body.stops,
            images=images or [],
        )
        self._submit(job)
        prompt_tokens = sum(len(p) for p in prompts)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = self._stream(job, events, Chunks(kind, body.model), prompt_tokens, usage)
            return StreamingResponse(stream, media_type="text/event-stream")
        texts, reasons, completion = await self._collect(request, job, events)
        self.metrics.count_tokens(prompt_tokens, completion)
        return full_response(kind, body.model, texts, reasons, prompt_tokens, completion)

    def _check_room(
        self, slot: Slot, prompt: list[int], max_tokens: int, index: int, param: str
    ) -> None:
        where = f"prompt {index}" if index else "the prompt"
        if not prompt:
            raise ApiError(400, f"{where} is empty", param)
        limit = slot.limit
        if limit is not None and len(prompt) + max_tokens > limit:
            message = (
                f"{where} has {len(prompt)} tokens and max_tokens is {max_tokens}: over the "
                f"model's {limit}-token limit; shorten the prompt or ask for fewer tokens"
            )
            raise ApiError(400, message, param, "context_length_exceeded")

    async def _collect(
        self, request: Request, job: Job, events: _Events
    ) -> tuple[list[str], list[str], int]:
        """The job's texts, finish reasons and completion tokens; a client that disconnects
        before the answer cancels the job (its rows stop at the next step)."""
        texts = [""] * len(job.choices)
        finishes: dict[int, Finish] = {}
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            while len(finishes) < len(job.choices):
                event = await events.next(gone)
                if event is None:
                    self.metrics.count_cancelled()
                    raise ApiError(499, "the client disconnected", None, "client_disconnected")
                if isinstance(event, Failed):
                    raise ApiError(500, event.message)
                if isinstance(event, Delta):
                    texts[event.index] += event.text
                elif isinstance(event, Finish):
                    finishes[event.index] = event
        finally:
            gone.cancel()
            if len(finishes) < len(job.choices):
                job.cancelled.set()
        reasons = [finishes[i].reason for i in range(len(texts))]
        return texts, reasons, sum(f.tokens for f in finishes.values())

    async def _stream(
        self, job: Job, events: _Events, chunks: Chunks, prompt_tokens: int, usage: bool
    ) -> AsyncIterator[str]:
        finished, completion = 0, 0
        try:
            for choice in job.choices:
                first = chunks.start(choice.index)
                if first:
                    yield first
            while finished < len(job.choices):
                event = await events.queue.get()
                if isinstance(event, Failed):
                    yield f"data: {json.dumps(error_body(event.message, 'server_error'))}\n\n"
                    break
                if isinstance(event, Delta):
                    yield chunks.text(event.index, event.text)
                elif isinstance(event, Finish):
                    finished += 1
                    completion += event.tokens
                    yield chunks.text(event.index, "", event.reason)
            self.metrics.count_tokens(prompt_tokens, completion)
            if usage:
                yield chunks.usage(prompt_tokens, completion)
            yield DONE
        finally:
            if finished < len(job.choices):
                job.cancelled.set()
                self.metrics.count_cancelled()


class _Events:
    """An asyncio queue the worker thread feeds through the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.getter: asyncio.Future[Event] | None = None

    async def next(self, gone: asyncio.Future[None]) -> Event | None:
        """The next event; None once ``gone`` is done (the client has disconnected). Events
        already queued come first."""
        if self.getter is None:
            self.getter = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({self.getter, gone}, return_when=asyncio.FIRST_COMPLETED)
        if self.getter.done():
            event, self.getter = self.getter.result(), None
            return event
        self.getter.cancel()
        return None

    def sink(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


async def _disconnected(request: Request) -> None:
    """Return once the client has closed its connection: the ASGI server's
    ``http.disconnect``, sent as soon as it sees the socket close (not polled)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


__all__ = ["ApiError", "ServeSettings", "make_app"]
