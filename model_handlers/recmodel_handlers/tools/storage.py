"""`recmodel fetch`: puts a model at a local path, as KServe's storage initializer would.

file:// is copied here; s3://, gs://, https:// and the rest go through KServe's own storage
code (`pip install kserve[storage]`, as the model-server image does).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def fetch(uri: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if uri.startswith("file://"):
        source = Path(uri.removeprefix("file://"))
        if not source.exists():
            raise FileNotFoundError(f"{uri}: no such file or directory")
        if source.is_dir():
            shutil.copytree(source, out, dirs_exist_ok=True)
        else:
            shutil.copy2(source, out / source.name)
        return out
    try:
        from kserve_storage import Storage  # type: ignore[import-not-found]
    except ImportError as error:
        raise RuntimeError(f"fetching {uri} needs KServe's storage code: pip install 'kserve[storage]'") from error
    return Path(Storage.download(uri, str(out)))
