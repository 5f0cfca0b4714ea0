"""The serving side of RecModel, in layers (each imports only the ones below it; `make lint`
checks it with import-linter, see docs/architecture.md):

    cli        `recmodel train | package | serve | predict | explain | fetch | bench`
    tools      the HTTP client, model fetching, sample requests, the in-process stage benchmark
    serving    the model servers: HTTP app and Guard, Open Inference Protocol, the KServe and
    training   TorchServe adapters, canary mirroring, metrics  |  training, evaluation, data
    ranking    the core behind both servers: the request, RankingCore, rules, precision and
               the quality gate, batching, cache, explanations
    model      the artifact: network, features, input tensors, embedding tables, package format
    errors, settings
"""

FORMAT_VERSION = 1
