"""TorchServe adapter: a `BaseHandler` over the same ranking core as the KServe server.

TorchServe batches requests itself (batchSize/maxBatchDelay in config.properties); a batch
is scored in one forward pass. Settings come from RECMODEL_* environment variables (the
operator renders them; TorchServe passes no arguments to handlers).
"""

from __future__ import annotations

import json
import logging
import os
from http import HTTPStatus
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from recmodel_handlers.errors import ServingError
from recmodel_handlers.model.features import EncodedRequest
from recmodel_handlers.ranking import request
from recmodel_handlers.ranking.core import RankingCore, tune_for_serving
from recmodel_handlers.settings import CoreSettings

log = logging.getLogger(__name__)


def _body(row: dict[str, Any], context: Any, index: int) -> object:
    """The request body as sent (bytes), or as TorchServe parsed it: Python's `json` for
    application/json, text for text/*. A parsed JSON string goes back to its JSON text, so the
    decoder cannot take it for the body's own text."""
    name = "body" if row.get("body") is not None else "data"
    value = row.get(name)
    if value is None:
        return b""
    if not isinstance(value, str):
        return value
    try:
        kind = str((context.get_request_header(index, name) or {}).get("content-type", ""))
    except (AttributeError, TypeError, IndexError):  # a context without request headers
        kind = ""
    return json.dumps(value).encode() if kind.startswith("application/json") else value


class RecModelHandler(BaseHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.core: RankingCore | None = None

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        # A large model's tables stay outside the archive (TorchServe would unpack a copy of
        # every file in the .mar for each worker); RECMODEL_MODEL_DIR then names their folder.
        model_dir = os.environ.get("RECMODEL_MODEL_DIR") or properties.get("model_dir")
        gpu = properties.get("gpu_id")
        device = torch.device(f"cuda:{gpu}") if torch.cuda.is_available() and gpu is not None else torch.device("cpu")
        self.core = RankingCore.from_dir(model_dir, CoreSettings.from_env(), device=device)
        log.info("serving %s", self.core.describe())
        tune_for_serving()
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        """One TorchServe batch: every valid request scored together; each invalid one gets the
        status and body `errors.py` gives it, as under KServe."""
        assert self.core is not None
        parsed: list[tuple[int, list[EncodedRequest]]] = []
        responses: list[Any] = [None] * len(data)
        limit = self.core.settings.max_request_candidates
        for index, row in enumerate(data):
            body = _body(row, context, index)
            try:
                found = request.decode(body, limit)
                parsed.append((index, request.encode_parsed(self.core.encoder, found, body)))
            except ServingError as error:
                # The standard reason phrase: TorchServe frames the phrase by its length in
                # characters but sends its UTF-8 bytes, so a non-ASCII phrase (an id the client
                # sent, quoted in the message) would kill the worker. The body carries the message.
                context.set_response_status(error.status, HTTPStatus(error.status).phrase, idx=index)
                responses[index] = error.body()
        requests = [r for _, encoded in parsed for r in encoded]
        if requests:
            with torch.inference_mode():
                scores = iter(self.core.score(requests).scores)
            for index, encoded in parsed:
                results = [self.core.finish(r, next(scores)) for r in encoded]
                responses[index] = request.v1_response(results)
        return responses
