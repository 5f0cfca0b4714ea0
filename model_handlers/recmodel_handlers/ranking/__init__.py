"""The ranking core behind both servers, which never imports a server: a request decoded
(`request`), encoded and scored in one pass (`core`), the request's rules (`rules`),
optimizations as settings (`precision`, `batching`, `cache`) with the quality gate
(`quality`), and explanations (`explain`)."""
