"""Synthetic data sets the scenarios serve: station-year CSVs laid out as ``<root>/<name>/<group>/<n>.csv``,
and manifests (JSON Lines) pointing at them, with what each merged output must hold."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "HEADER",
    "csv_file",
    "DataSet",
    "write_dataset",
    "write_manifest",
    "group_sizes",
    "verify_outputs",
    "sample_urls",
]

HEADER = b"Date/Time,Year,Month,Station ID,Mean Temp (C),Total Precip (mm)\r\n"


def csv_file(group: int, index: int, size: int) -> bytes:
    """A CSV of about ``size`` bytes: the shared header, then deterministic rows unique to (group, index)."""
    rows = []
    total = len(HEADER)
    month = 0
    while total < size:
        month += 1
        temp = f"{(group * 7 + month) % 40 - 10}.{month % 10}"
        row = f"{1900 + index}-{month:05d},{1900 + index},{month},{group},{temp},"
        row += f"{(group + index + month) % 97}.{month % 7}\r\n"
        rows.append(row.encode())
        total += len(rows[-1])
    return HEADER + b"".join(rows)


def group_sizes(groups: int, files: int) -> list[int]:
    """Spread ``files`` over ``groups`` evenly (the motivating job averages 23.3 per station)."""
    base, extra = divmod(files, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


@dataclass(frozen=True)
class DataSet:
    name: str
    sizes: tuple[int, ...]  # files per group
    file_bytes: int
    pool: int  # distinct files on disk; URL i of a group maps to pool file (g*31 + i) % pool

    @property
    def files(self) -> int:
        return sum(self.sizes)

    def pool_path(self, group: int, index: int) -> str:
        return f"{self.name}/p{(group * 31 + index) % self.pool}.csv"

    def urls(self, base_url: str) -> Iterator[tuple[int, list[str]]]:
        for g, count in enumerate(self.sizes):
            # The query string makes every URL unique; nginx ignores it and serves the pool file.
            yield g, [f"{base_url}{self.pool_path(g, i)}?station={g}&year={1900 + i}" for i in range(count)]

    def expected_csv(self, root: str, group: int, cache: dict[str, bytes]) -> bytes:
        parts = []
        for i in range(self.sizes[group]):
            path = self.pool_path(group, i)
            if path not in cache:
                with open(os.path.join(root, path), "rb") as handle:
                    cache[path] = handle.read()
            parts.append(cache[path][len(HEADER) :])
        return HEADER + b"".join(parts)


def write_dataset(root: str, dataset: DataSet) -> None:
    """Write the pool files (idempotent: a complete pool is left as it is)."""
    folder = os.path.join(root, dataset.name)
    os.makedirs(folder, exist_ok=True)
    for p in range(dataset.pool):
        path = os.path.join(folder, f"p{p}.csv")
        if not os.path.exists(path):
            with open(path, "wb") as handle:
                handle.write(csv_file(p, p % 60, dataset.file_bytes))


def write_manifest(path: str, dataset: DataSet, base_url: str, *, merge: str = "csv") -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for g, urls in dataset.urls(base_url):
            handle.write(
                json.dumps(
                    {"group": f"g{g}", "urls": urls, "key": f"{dataset.name}/g{g}.csv", "merge": merge}
                )
                + "\n"
            )


def verify_outputs(root: str, out: str, dataset: DataSet) -> int:
    """Check every merged output byte for byte; return the number of files it accounts for."""
    from bench.common import ScenarioFailed

    cache: dict[str, bytes] = {}
    for g in range(len(dataset.sizes)):
        path = os.path.join(out, dataset.name, f"g{g}.csv")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise ScenarioFailed(f"output missing: {path}") from None
        expected = dataset.expected_csv(root, g, cache)
        if hashlib.sha256(data).digest() != hashlib.sha256(expected).digest():
            raise ScenarioFailed(f"{path}: {len(data)} bytes differ from the expected {len(expected)}")
    return dataset.files


def sample_urls(dataset: DataSet, base_url: str, count: int) -> Sequence[str]:
    out: list[str] = []
    for _, urls in dataset.urls(base_url):
        out.extend(urls)
        if len(out) >= count:
            break
    return out[:count]
