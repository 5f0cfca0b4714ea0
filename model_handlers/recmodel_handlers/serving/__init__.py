"""The model servers, thin adapters over `ranking`: the HTTP app and its Guard (`app`,
`guard`, `server`), the Open Inference Protocol (`oip`), KServe's `Model` (`kserve_model`),
TorchServe's handler and model store (`torchserve_handler`, `torchserve_store`), canary
mirroring (`mirror`, `agreement`) and the Prometheus metrics (`metrics`)."""
