"""SB3 checkpoints that run code when unpickled: each writes a marker file if anything loads it."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def booby_trap(genuine: Path, out: Path, field: str, marker: Path) -> Path:
    """A copy of the SB3 archive ``genuine`` whose ``data`` field ``field`` (new or existing) unpickles
    to a call that writes ``marker``."""
    payload = base64.b64encode(pickle.dumps(_WritesMarker(marker))).decode()
    with zipfile.ZipFile(genuine) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                kept = data.get(field) if isinstance(data.get(field), dict) else {}
                data[field] = {**kept, ":type:": "<class 'type'>", ":serialized:": payload}
                content = json.dumps(data).encode()
            target.writestr(item, content)
    return out
