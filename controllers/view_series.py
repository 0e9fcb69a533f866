"""What the workloads' `view` hooks share: tolerant readers of the files a run is writing.

The live view calls every workload's `view` hook about once a second while the run's nodes
are still appending to their records (testbed/view/workloads.py), so any file may end in a
half-written line: these readers drop a last line that has no newline yet instead of failing
or returning a truncated row, and skip lines that do not parse (a record cut by a kill).  The
files are kilobytes to a few MB, so each call reads them whole: nothing is cached.

JSON-lines files are only ever appended to, so `jsonl_records` keeps what it parsed and
reads only the bytes added since (a training run's logs are ~7,000 lines: parsed whole every
second they cost ~60 ms, more than the view's budget); a file that shrank or was replaced is
read again from the start.

Only the standard library: the hooks live in each workload's small registration module,
which reading the registry imports.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

Series = list[dict[str, str]]
Points = list[tuple[float, dict[str, float]]]
ViewData = tuple[Series, Points]


def series(key: str, label: str, unit: str, group: str) -> dict[str, str]:
    """One series declaration as docs/view-protocol.md's `series` lists them."""
    return {"key": key, "label": label, "unit": unit, "group": group}


def complete_text(path: Path) -> str:
    """The file's text up to its last newline ("" when it is missing): a line still being
    written is left for the next call."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    end = data.rfind(b"\n")
    return data[:end + 1].decode("utf-8", errors="replace") if end >= 0 else ""


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file with a header, as dicts (missing cells are "")."""
    text = complete_text(path)
    if not text:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        rows.append({k: (v if v is not None else "") for k, v in row.items() if k is not None})
    return rows


_CACHE_FILES = 256  # the JSON-lines files whose records are kept (least recently read go)
# path -> (device and inode, bytes parsed: up to a newline, its records)
_parsed: OrderedDict[str, tuple[tuple[int, int], int, list[dict[str, Any]]]] = OrderedDict()


def _parse_lines(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    """The complete JSON objects of a JSON-lines file, in file order ([] when it is missing);
    lines that do not parse are skipped.  The list is shared with later calls: read it, do
    not change it."""
    key = str(path)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            ident = (st.st_dev, st.st_ino)
            old = _parsed.get(key)
            start, records = (old[1], old[2]) if old and old[0] == ident \
                and old[1] <= st.st_size else (0, [])
            f.seek(start)
            data = f.read()
    except OSError:
        _parsed.pop(key, None)
        return []
    end = data.rfind(b"\n")
    if end >= 0:
        records = records + _parse_lines(data[:end + 1])
        start += end + 1
    _parsed[key] = (ident, start, records)
    _parsed.move_to_end(key)
    while len(_parsed) > _CACHE_FILES:
        _parsed.popitem(last=False)
    return records


def number(value: Any) -> float | None:
    """A finite float from a CSV cell or JSON value, else None ("", "None", text, NaN)."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def truth(value: Any) -> bool:
    """A CSV cell written from a Python bool ("True"/"False") or a JSON bool."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")
