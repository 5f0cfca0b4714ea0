"""`make demo`: the whole path a user takes, on the local control plane."""
