"""Pass 1's memory of a manifest: 64-bit hashes of group ids and key identities (cross-group rules), counts,
the job id's running hash and the hosts — never the groups themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from dataclasses import dataclass
from urllib.parse import urlsplit

from fanfetch.core.limits import utf8_bytes
from fanfetch.core.manifest_groups import JOB_ID_VERSION
from fanfetch.core.manifest_plain import Plain
from fanfetch.core.manifest_rules import key_identity
from fanfetch.core.models import Group, MergeMode

__all__ = ["HostSeen", "ManifestScan", "Tracker", "host_port_of"]

_JOB_ID_CHUNK = 4096  # records joined per sha256 update
_URL_HEAD = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*')
_MODE_NAMES = {mode: mode.value for mode in MergeMode}


@dataclass(frozen=True)
class HostSeen:
    """A host and port the manifest downloads from, and the first group that does."""

    host: str
    port: int
    group_id: str


def host_port_of(url: str) -> tuple[str, int]:
    """The lower-cased host and the port (the scheme's default when none is given) a URL downloads from."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class ManifestScan:
    """What pass 1 keeps of a valid manifest: its job id, sizes and hosts (never its groups)."""

    job_id: str
    groups: int
    files: int
    hosts: tuple[HostSeen, ...]


class Tracker:
    """Pass 1's memory: hashes of ids and key identities in arrays, counts, the job id's hash, the hosts."""

    def __init__(self, *, key_prefix: str):
        self.ids = array("q")
        self.files = array("q")  # key identities of output files
        self.folders = array("q")  # key identities of output folders (merge none), without the slash
        self.prefixes = array("q")  # identities of every folder a key needs
        self.prefix_bytes = utf8_bytes(key_prefix)
        self.groups = 0
        self.file_count = 0
        self._digest = hashlib.sha256(JOB_ID_VERSION + b"[")
        self._digest_started = False
        self._records: list[str] = []
        self._heads: dict[str, tuple[str, int]] = {}
        self._hosts: dict[tuple[str, int], HostSeen] = {}

    def add_plain(self, plain: Plain) -> None:
        group_id, urls, heads, key, merge, _ = plain
        self.groups += 1
        self.file_count += len(urls)
        self.ids.append(hash(group_id))
        self._note_key(key.lower())  # key_identity of printable ASCII
        if len(urls) == 1:
            self._records.append(f'["{group_id}","{key}","{_MODE_NAMES[merge]}",[["{urls[0]}",null,null,null]]]')
        else:
            sources = ",".join(f'["{url}",null,null,null]' for url in urls)
            self._records.append(f'["{group_id}","{key}","{_MODE_NAMES[merge]}",[{sources}]]')
        if len(self._records) >= _JOB_ID_CHUNK:
            self._flush()
        for head in heads:
            if head not in self._heads:
                self._note_head(head, group_id)

    def add_group(self, group: Group) -> None:
        self.groups += 1
        self.file_count += len(group.sources)
        self.ids.append(hash(group.group_id))
        self._note_key(key_identity(group.key))
        self._records.append(json.dumps([group.group_id, group.key, group.merge.value,
                                         [[s.url, s.sha256, s.md5, s.size] for s in group.sources]],
                                        ensure_ascii=False, separators=(",", ":")))
        if len(self._records) >= _JOB_ID_CHUNK:
            self._flush()
        for source in group.sources:
            match = _URL_HEAD.match(source.url)
            head = match.group() if match else source.url
            if head not in self._heads:
                self._note_head(head, group.group_id)

    def _note_key(self, identity: str) -> None:
        """A key's identity among the output files or (ending in "/") folders, and every folder it needs."""
        if identity[-1] == "/":
            identity = identity[:-1]
            self.folders.append(hash(identity))
        else:
            self.files.append(hash(identity))
        if "/" in identity:
            self._note_prefixes(identity)

    def _note_prefixes(self, identity: str) -> None:
        # key_identity of a prefix is the prefix of the identity: "/" is a starter, folds and composes with nothing
        parts = identity.split("/")
        for depth in range(1, len(parts)):
            self.prefixes.append(hash("/".join(parts[:depth])))

    def _note_head(self, head: str, group_id: str) -> None:
        host_port = host_port_of(head)
        self._heads[head] = host_port
        if host_port not in self._hosts:
            self._hosts[host_port] = HostSeen(host_port[0], host_port[1], group_id)

    def _flush(self) -> None:
        if self._records:
            prefix = b"," if self._digest_started else b""
            self._digest.update(prefix + ",".join(self._records).encode("utf-8"))
            self._digest_started = True
            self._records.clear()

    def finish(self) -> ManifestScan | None:
        """The scan, or None when a cross-group rule may be broken (the whole-manifest check then says how)."""
        if not self.groups:
            return None  # "no groups": worded by the whole check
        if _repeats(self.ids) or _repeats(self.files) or _repeats(self.folders):
            return None
        if self.folders and not _disjoint(self.folders, self.files):
            return None  # a folder named like a file
        if self.prefixes:
            needed = set(self.prefixes)
            if not needed.isdisjoint(self.files) or not needed.isdisjoint(self.folders):
                return None  # a key needs a file to be a folder, or lies in a none-folder
        self._flush()
        self._digest.update(b"]")
        return ManifestScan(job_id=self._digest.hexdigest()[:16], groups=self.groups, files=self.file_count,
                            hosts=tuple(self._hosts.values()))


def _repeats(values: array) -> bool:
    return len(set(values)) != len(values)


def _disjoint(small: array, large: array) -> bool:
    return set(small).isdisjoint(large)
