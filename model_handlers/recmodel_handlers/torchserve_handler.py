"""TorchServe adapter: a `BaseHandler` over the same ranking core as the KServe server.

TorchServe batches requests itself (batchSize/maxBatchDelay in config.properties); a batch
is scored in one forward pass. Settings come from RECMODEL_* environment variables (the
operator renders them; TorchServe passes no arguments to handlers).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
import torch
from ts.torch_handler.base_handler import BaseHandler

from recmodel_handlers.core import RankingCore, tune_for_serving
from recmodel_handlers.errors import RequestError
from recmodel_handlers.features import EncodedRequest, check_request_candidates
from recmodel_handlers.settings import CoreSettings

log = logging.getLogger(__name__)


def _documents(body: Any) -> list[Any]:
    """A request body is a ranking document, {"instances": [...]}, or (KServe's envelope) one instance."""
    if isinstance(body, bytes | bytearray | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise RequestError("body", f"is not valid JSON: {error}") from error
    if type(body) is dict and "instances" in body:
        return RankingCore.instances_of(body)
    return [body]


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
        """One TorchServe batch: every valid request scored together; invalid ones get 400."""
        assert self.core is not None
        parsed: list[tuple[int, list[EncodedRequest]]] = []
        responses: list[Any] = [None] * len(data)
        for index, row in enumerate(data):
            body = row.get("body") if row.get("body") is not None else row.get("data")
            try:
                docs = _documents(body)
                check_request_candidates(docs, self.core.settings.max_request_candidates)
                parsed.append((index, [self.core.encode(doc) for doc in docs]))
            except RequestError as error:
                context.set_response_status(400, str(error), idx=index)
                responses[index] = orjson.dumps({"error": str(error)}).decode()
        requests = [r for _, encoded in parsed for r in encoded]
        if requests:
            with torch.inference_mode():
                scores = iter(self.core.score(requests).scores)
            for index, encoded in parsed:
                results = [self.core.finish(r, next(scores)) for r in encoded]
                responses[index] = orjson.dumps({"predictions": results}).decode()
        return responses
