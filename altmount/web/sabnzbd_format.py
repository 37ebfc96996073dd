"""SABnzbd API response shapes: queue and history slots, config, JSON and XML. No I/O.

Field names and value formats follow SABnzbd 4.x (`sabnzbd/api.py`) where the
*arr clients read them (Sonarr/Radarr `SabnzbdQueueItem`, `SabnzbdHistoryItem`,
`SabnzbdCategory`, `SabnzbdConfigMisc`, `SabnzbdFullStatus`):

- queue `timeleft` must be "H:MM:SS" (Sonarr splits it on ":" and fails otherwise);
- queue `priority` is the name ("Normal", "High", ...), `status` one of SABnzbd's
  words ("Queued", "Downloading", "Paused");
- history `bytes` and `download_time` are integers, `status` "Completed"/"Failed";
- the Default category is called "*" (Sonarr with no category matches on "*");
- sizes are the NZB's bytes from the moment an item is queued, and progress is
  the share of import stages done (`Progress`), so Sonarr shows real figures;
- with import strategy SYMLINK or STRM, `complete_dir` and `storage` are the
  link folders under `import.import_dir` (what Sonarr then imports).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from altmount.config import CategoryConfig, Config
from altmount.importer.layout import category_folder, name_password
from altmount.links.plan import link_folder
from altmount.queue.model import Priority, Progress, QueueItem, State

__all__ = [
    "SAB_VERSION",
    "DEFAULT_CATEGORY",
    "history_retention",
    "report",
    "to_units",
    "format_timeleft",
    "category_out",
    "find_category",
    "storage_path",
    "complete_dir",
    "category_dirs",
    "queue_slot",
    "queue_payload",
    "history_slot",
    "history_payload",
    "config_payload",
    "categories_list",
    "status_payload",
]

#: What `mode=version` reports. Sonarr and Radarr need 0.7.0+ and use newer API
#: paths (fullstatus, priorities) from 2.0/3.0 on; 4.3 is a current release.
SAB_VERSION = "4.3.0"
#: SABnzbd's name for the Default category in its API.
DEFAULT_CATEGORY = "*"
_MIB = 1024 * 1024
_PRIORITY_NAMES = {
    Priority.LOW: "Low",
    Priority.NORMAL: "Normal",
    Priority.HIGH: "High",
    Priority.FORCE: "Force",
}
_QUEUE_STATUS = {State.PENDING: "Queued", State.PROCESSING: "Downloading", State.PAUSED: "Paused"}
_HISTORY_STATUS = {State.COMPLETED: "Completed", State.FAILED: "Failed"}
#: SABnzbd's XML writer names list elements after their parent (its plural_to_single).
_SINGULAR = {
    "categories": "category",
    "servers": "server",
    "scripts": "script",
    "warnings": "warning",
    "files": "file",
    "jobs": "job",
}


def report(
    output: str, *, error: str | None = None, keyword: str = "value", data: Any = None
) -> tuple[bytes, bytes]:
    """(body, content type) as SABnzbd's `report()` makes them.

    An error gives {"status": false, "error": ...}; no data gives {"status": true};
    otherwise {keyword: data}, or `data` itself when `keyword` is empty.
    """
    if output == "xml":
        if error:
            body = _xml("result", {"status": False, "error": error})
        elif data is None:
            body = _xml("result", {"status": True})
        else:
            body = _xml(keyword or "result", data)
        text = '<?xml version="1.0" encoding="UTF-8" ?>\n' + body + "\n"
        return text.encode("utf-8"), b"text/xml; charset=UTF-8"
    if error:
        info: Any = {"status": False, "error": error}
    elif data is None:
        info = {"status": True}
    else:
        info = data if not keyword else {keyword: data}
    return json.dumps(info).encode("utf-8"), b"application/json;charset=UTF-8"


def _xml(keyword: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml(key, item) for key, item in value.items())
        return f"<{keyword}>{inner}</{keyword}>\n"
    if isinstance(value, (list, tuple)):
        parts = []
        for item in value:
            if isinstance(item, dict):
                parts.append(_xml(_SINGULAR.get(keyword, "slot"), item))
            else:
                name = _SINGULAR.get(keyword, "item")
                parts.append(f"<{name}>{escape(_text(item))}</{name}>\n")
        return f"<{keyword}>{''.join(parts)}</{keyword}>\n"
    return f"<{keyword}>{escape(_text(value))}</{keyword}>\n"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def to_units(size: float) -> str:
    """Bytes as SABnzbd shows them: "0 B", "512.0 KB", "1.2 GB"."""
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {units[unit]}"


def format_timeleft(seconds: float) -> str:
    """Seconds as "H:MM:SS" (hours unbounded), the one format Sonarr's parser takes."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _is_default(category: CategoryConfig) -> bool:
    return category.name.lower() == "default"


def category_out(config: Config, name: str) -> str:
    """A stored category name as the API shows it: "*" for the Default category."""
    category = find_category(config, name)
    if category is None:
        return name
    return DEFAULT_CATEGORY if _is_default(category) else category.name


def find_category(config: Config, name: str | None) -> CategoryConfig | None:
    """The configured category called `name` ("*" and "" mean Default), or None."""
    wanted = (name or "").strip().lower()
    if wanted in ("", DEFAULT_CATEGORY, "default"):
        return next((c for c in config.sabnzbd.categories if _is_default(c)), CategoryConfig())
    return next((c for c in config.sabnzbd.categories if c.name.lower() == wanted), None)


def _mounted(config: Config, virtual_path: str) -> str:
    mount = config.sabnzbd.mount_dir.rstrip("/")
    return mount + virtual_path if mount else virtual_path


def storage_path(config: Config, item: QueueItem) -> str:
    """Where the *arr finds a completed release: `mount_dir` + its virtual folder, or
    its link folder under `import.import_dir` with the SYMLINK and STRM strategies."""
    if not item.target_path:
        return ""
    if config.import_.import_strategy != "none":
        return link_folder(config, item.target_path)
    return _mounted(config, item.target_path)


def complete_dir(config: Config) -> str:
    """The SABnzbd `complete_dir` as clients see it (absolute, so Sonarr uses it as is):
    the mounted complete_dir, or `import.import_dir` when links are imported."""
    if config.import_.import_strategy != "none":
        return config.import_.import_dir.rstrip("/") or "/"
    return _mounted(config, "/" + config.sabnzbd.complete_dir.strip("/"))


def category_dirs(config: Config) -> list[str]:
    """The virtual folders of complete_dir and of every category under it."""
    root = "/" + config.sabnzbd.complete_dir.strip("/")
    base = root.rstrip("/")
    return [root] + [
        f"{base}/{category_folder(c.dir or c.name)}" for c in config.sabnzbd.categories
    ]


def history_retention(config: Config) -> dict[str, Any]:
    """SABnzbd's retention keys for how long completed items stay in the history.

    `history_retention_days` of 0 keeps them forever ("all"); otherwise SABnzbd 4's
    "days-delete" with whole days (a fraction rounds down, so Sonarr's under-14-days
    warning is never hidden), and the pre-4.0 form "<days>d" that older clients read.
    """
    days = config.import_.history_retention_days
    if days <= 0:
        return {
            "history_retention": "0",
            "history_retention_option": "all",
            "history_retention_number": 0,
        }
    whole = math.floor(days)
    return {
        "history_retention": f"{whole}d",
        "history_retention_option": "days-delete",
        "history_retention_number": whole,
    }


def _release_title(item: QueueItem) -> str:
    """The job name: its release folder's name once imported, else the NZB's file name."""
    if item.target_path:
        return item.target_path.rstrip("/").rsplit("/", 1)[-1]
    name = name_password(item.nzb_name)[0]
    for suffix in (".nzb.gz", ".nzb"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _mb(size: float) -> str:
    return f"{size / _MIB:.2f}"


def queue_slot(
    config: Config, item: QueueItem, index: int, progress: Progress | None = None
) -> dict[str, Any]:
    """One `mode=queue` slot: the NZB's size, and how far its import is."""
    done = min(1.0, max(0.0, progress.done)) if progress is not None else 0.0
    left = item.size * (1 - done)
    return {
        "index": index,
        "nzo_id": item.nzo_id,
        "unpackopts": "3",
        "priority": _PRIORITY_NAMES.get(item.priority, "Normal"),
        "script": "None",
        "filename": _release_title(item),
        "labels": [],
        "password": "",
        "cat": category_out(config, item.category),
        "mbleft": _mb(left),
        "mb": _mb(item.size),
        "size": to_units(item.size),
        "sizeleft": to_units(left),
        "percentage": str(int(done * 100)),
        "mbmissing": "0.00",
        "direct_unpack": None,
        "status": _QUEUE_STATUS.get(item.state, "Queued"),
        "timeleft": format_timeleft(progress.seconds_left() if progress is not None else 0),
        "avg_age": "-",
        "time_added": int(item.created_at),
    }


def queue_payload(
    config: Config,
    items: Sequence[QueueItem],
    *,
    total: int,
    start: int,
    limit: int,
    paused: bool,
    progress: Mapping[int, Progress] | None = None,
) -> dict[str, Any]:
    """The `queue` object of `mode=queue` for one page of active items.

    `progress` holds the running imports by item id; the totals add up the page.
    """
    running = progress or {}
    slots = [
        queue_slot(config, item, start + n, running.get(item.id)) for n, item in enumerate(items)
    ]
    busy = any(item.state == State.PROCESSING for item in items)
    status = "Paused" if paused else ("Downloading" if busy else "Idle")
    size = sum(item.size for item in items)
    left = sum(float(slot["mbleft"]) for slot in slots) * _MIB
    seconds = max(
        (p.seconds_left() for item_id, p in running.items() if any(i.id == item_id for i in items)),
        default=0.0,
    )
    return {
        "version": SAB_VERSION,
        "paused": paused,
        "pause_int": "0",
        "paused_all": paused,
        "speedlimit": "100",
        "speedlimit_abs": "",
        "have_warnings": "0",
        "finishaction": None,
        "quota": "0 ",
        "have_quota": False,
        "left_quota": "0 ",
        "cache_art": "0",
        "cache_size": "0 B",
        "kbpersec": "0.00",
        "speed": "0 ",
        "mbleft": _mb(left),
        "mb": _mb(size),
        "sizeleft": to_units(left),
        "size": to_units(size),
        "noofslots_total": total,
        "noofslots": total,
        "start": start,
        "limit": limit,
        "finish": start + limit,
        "status": status,
        "timeleft": format_timeleft(seconds),
        "slots": slots,
    }


def history_slot(config: Config, item: QueueItem) -> dict[str, Any]:
    """One `mode=history` slot; `storage` is the release folder under the client's mount."""
    completed = item.completed_at or item.updated_at
    started = item.started_at or item.created_at
    storage = storage_path(config, item) if item.state == State.COMPLETED else ""
    failed = item.state != State.COMPLETED
    message = item.error if failed else ""
    return {
        "id": item.id,
        "completed": int(completed),
        "name": _release_title(item),
        "nzb_name": name_password(item.nzb_name)[0],
        "category": category_out(config, item.category),
        "pp": "D",
        "script": "None",
        "report": "",
        "url": "",
        "status": _HISTORY_STATUS.get(item.state, "Failed"),
        "nzo_id": item.nzo_id,
        "storage": storage,
        "path": storage,
        "script_line": "",
        "download_time": max(0, int(completed - started)),
        "postproc_time": 0,
        "stage_log": [],
        "downloaded": item.size,
        "completeness": None,
        "fail_message": message,
        "url_info": "",
        "bytes": item.size,
        "size": to_units(item.size),
        "meta": None,
        "series": "",
        "md5sum": "",
        "password": "",
        "duplicate_key": "",
        "action_line": "",
        "loaded": False,
        "retry": failed,
        "archive": False,
        "time_added": int(item.created_at),
    }


def history_payload(config: Config, items: Iterable[QueueItem], *, total: int) -> dict[str, Any]:
    """The `history` object of `mode=history`."""
    slots = [history_slot(config, item) for item in items]
    return {
        "noofslots": total,
        "ppslots": 0,
        "day_size": "0 B",
        "week_size": "0 B",
        "month_size": "0 B",
        "total_size": "0 B",
        "last_history_update": 0,
        "version": SAB_VERSION,
        "slots": slots,
    }


def categories_list(config: Config) -> list[str]:
    """`mode=get_cats`: category names in display order, "*" for Default."""
    ordered = sorted(config.sabnzbd.categories, key=lambda c: (not _is_default(c), c.order))
    return [DEFAULT_CATEGORY if _is_default(c) else c.name for c in ordered]


def config_payload(config: Config, *, port: int | None) -> dict[str, Any]:
    """`mode=get_config`: misc folders and sorting switches, categories, no servers.

    Secrets are left out: no API key, no provider credentials.
    """
    folder = complete_dir(config)
    misc = {
        "complete_dir": folder,
        "download_dir": folder,
        "url_base": "/sabnzbd",
        "port": str(port or ""),
        "pre_check": False,
        "enable_tv_sorting": False,
        "enable_movie_sorting": False,
        "enable_date_sorting": False,
        "tv_categories": [],
        "movie_categories": [],
        "date_categories": [],
        **history_retention(config),
    }
    ordered = sorted(config.sabnzbd.categories, key=lambda c: (not _is_default(c), c.order))
    categories = [
        {
            "name": DEFAULT_CATEGORY if _is_default(c) else c.name,
            "order": c.order,
            "pp": "",
            "script": "Default" if not _is_default(c) else "None",
            "dir": category_folder(c.dir or c.name),
            "newzbin": "",
            "priority": c.priority,
        }
        for c in ordered
    ]
    return {"misc": misc, "categories": categories, "servers": [], "sorters": []}


def status_payload(config: Config, *, paused: bool) -> dict[str, Any]:
    """`mode=fullstatus`: what Sonarr reads (`completedir`) plus the harmless basics."""
    folder = complete_dir(config)
    return {
        "version": SAB_VERSION,
        "paused": paused,
        "pause_int": "0",
        "paused_all": paused,
        "completedir": folder,
        "downloaddir": folder,
        "loadavg": "",
        "warnings": [],
        "servers": [],
        "folders": [],
        "have_warnings": "0",
    }
