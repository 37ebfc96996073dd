"""PNG plots of a stream benchmark, when matplotlib is installed (`pip install '.[bench]'`).

Two figures: aggregate and p05 throughput against the number of concurrent streams
(scenario b's sweep), and the RSS of altmount's process (and its decode workers)
over the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["available", "plot_stream"]


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_stream(result: dict[str, Any], out_dir: Path, stem: str = "stream") -> list[Path]:
    """Write `<stem>-throughput.png` and `<stem>-rss.png` under out_dir; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    options = result["options"]
    title = (
        f"{options['size_mb']:g} MiB, {options['connections']} connections, "
        f"{options['latency_ms']:g} ms latency, pool={options['pool']}"
    )

    sweep = result["concurrent_sweep"]
    fig, ax = plt.subplots(figsize=(6, 4))
    users = [row["users"] for row in sweep]
    ax.plot(users, [row["mb_s"] for row in sweep], "o-", label="aggregate MB/s")
    ax.plot(users, [row["p05_mb_s"] for row in sweep], "s--", label="p05 MB/s per stream")
    if result["raw"]["mb_s"]:
        ax.axhline(result["raw"]["mb_s"], color="grey", linestyle=":", label="raw ceiling")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("MB/s")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    path = out_dir / f"{stem}-throughput.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    samples = result["process"]["rss_samples"]
    if samples:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([s[0] for s in samples], [s[1] for s in samples], label="altmount serve")
        ax.plot(
            [s[0] for s in samples],
            [s[2] for s in samples],
            "--",
            label="with decode workers (shared memory counted per process)",
        )
        ax.set_xlabel("seconds since the first scenario")
        ax.set_ylabel("RSS MiB")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = out_dir / f"{stem}-rss.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
