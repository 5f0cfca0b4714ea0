"""`python3 -m devcluster.build`: builds whatever binary is missing and prints their folder. Only
the standard library: it runs with the system's Python while `make venv` installs the packages."""

from devcluster.build.go import build_all

print(build_all())
