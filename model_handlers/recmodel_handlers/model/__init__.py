"""The model artifact: the network, the features it reads (the same code in training and
serving), its input tensors (declared once), its embedding tables, and the packaged directory
a RecModel's storageUri points at."""
