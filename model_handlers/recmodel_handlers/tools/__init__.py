"""Around the model: the HTTP client behind `recmodel predict|explain`, model fetching, sample
requests, the in-process stage benchmark and the explanation views."""
