"""The hot-path kernels: yEnc decoding and byte-range planning/assembly.

This is the one place that picks the implementation. By default the Cython
extensions (built by ``pip install .``) are used and a missing extension is an
error, never a silent slowdown; ``ALTMOUNT_PURE=1`` selects the pure-Python
twins instead. `IMPLEMENTATION` says which one is active.
"""

from __future__ import annotations

import os

from altmount._core.types import DecodedArticle, RangePlan
from altmount.errors import AltmountError

__all__ = [
    "IMPLEMENTATION",
    "DecodedArticle",
    "RangePlan",
    "decode_article",
    "find_body_end",
    "plan_range",
    "assemble_range",
]

if os.environ.get("ALTMOUNT_PURE") == "1":
    from altmount._core.ranges_py import assemble_range, plan_range
    from altmount._core.yenc_py import decode_article, find_body_end

    IMPLEMENTATION = "python"
else:
    try:
        # The compiled modules have the twins' signatures (held to it by the tests).
        from altmount._core._ranges import assemble_range, plan_range  # type: ignore[no-redef]
        from altmount._core._yenc import (  # type: ignore[no-redef]
            decode_article,
            find_body_end,
        )
    except ImportError as exc:
        raise AltmountError(
            f"the compiled altmount._core extensions are missing ({exc}); "
            "run `pip install .` in the altmount source tree to build them, "
            "or set ALTMOUNT_PURE=1 to run the slow pure-Python twins"
        ) from exc
    IMPLEMENTATION = "cython"
