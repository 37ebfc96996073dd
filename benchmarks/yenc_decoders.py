"""sabctools' yEnc decoder against today's path (`_core` framing over sabyenc3) on real bodies.

`--size-mb` of random bytes are posted to the local INN2 with nyuu (scripts/setup-peers.sh)
and every article body is fetched back with BODY, as the NNTP parser hands it over
(dot-stuffed, without the final "." line). Each kernel then decodes every body, the
kernels alternating, `--rounds` times; reported: CPU-s/GiB of decoded data (this
process, `time.process_time`) as the median over the rounds, and the ratio to `_core`.

sabctools (9.x) decodes only inside its `Decoder`, which frames NNTP responses from its
own receive buffer: a body already received has to be copied into that buffer first
("sabctools Decoder, body copied in"). "raw response" copies the whole response (status
line and terminator too), which is what a socket reading straight into the buffer saves.

    .venv/bin/python benchmarks/yenc_decoders.py --size-mb 50 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sabctools
import sabyenc3
from nzbget_vs_altmount import INN2, post, problem

from altmount import _core

GIB = 1 << 30
STATUS = b"222 0 <bench@altmount>\r\n"


def fetch_bodies(nzb: Path) -> list[bytes]:
    """Every article of the NZB, fetched from INN2 with BODY (dot-stuffed, no final dot)."""
    ids = re.findall(r">([^<]+)</segment>", nzb.read_text())
    bodies = []
    with socket.create_connection(INN2) as sock:
        stream = sock.makefile("rb")
        stream.readline()
        for message_id in ids:
            sock.sendall(f"BODY <{message_id}>\r\n".encode())
            if not stream.readline().startswith(b"222"):
                raise RuntimeError(f"INN2 has no article <{message_id}>")
            lines = []
            while (line := stream.readline()) != b".\r\n":
                lines.append(line)
            bodies.append(b"".join(lines))
    return bodies


class SabctoolsDecoder:
    """sabctools.Decoder fed through its own buffer, one response at a time."""

    def __init__(self) -> None:
        self.decoder = sabctools.Decoder(2 << 20)

    def feed(self, data: bytes) -> None:
        view, offset = memoryview(data), 0
        while offset < len(view):
            buffer = memoryview(self.decoder)
            count = min(buffer.nbytes, len(view) - offset)
            buffer[:count] = view[offset : offset + count]
            buffer.release()
            offset += count
            self.decoder.process(count)

    def body(self, body: bytes) -> bytes:
        self.decoder.expect(None)
        self.feed(STATUS)
        self.feed(body)
        self.feed(b".\r\n")
        return next(self.decoder).data

    def response(self, response: bytes) -> bytes:
        self.decoder.expect(None)
        self.feed(response)
        return next(self.decoder).data


def kernels(bodies: list[bytes]) -> dict[str, tuple[Callable[[bytes], object], list[bytes]]]:
    sab = SabctoolsDecoder()
    responses = [STATUS + body + b".\r\n" for body in bodies]
    target = bytearray(2 << 20)

    def copy(body: bytes) -> None:
        memoryview(target)[: len(body)] = body

    return {
        "_core (sabyenc3)": (_core.decode_article, bodies),
        "sabyenc3 alone": (lambda body: sabyenc3.decode_usenet_chunks([body]), bodies),
        "sabctools Decoder, body copied in": (sab.body, bodies),
        "sabctools Decoder, raw response": (sab.response, responses),
        "memcpy of the body": (copy, bodies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the bodies per round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    why = problem()
    if why:
        print(why, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="yenc-decoders-") as work:
        nzb, _ = post(Path(work), int(args.size_mb * 1e6))
        bodies = fetch_bodies(nzb)
    for body in bodies:
        article = _core.decode_article(body)
        if bytes(SabctoolsDecoder().body(body)) != article.data:
            raise RuntimeError("sabctools and _core decode a body differently")
    decoded = sum(len(_core.decode_article(body).data) for body in bodies) * args.repeat
    table = kernels(bodies)
    samples: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, (kernel, inputs) in table.items():
            started = time.process_time()
            for _ in range(args.repeat):
                for item in inputs:
                    kernel(item)
            samples[name].append((time.process_time() - started) / decoded * GIB)
    base = statistics.median(samples["_core (sabyenc3)"])
    result = {
        "articles": len(bodies),
        "decoded_bytes_per_round": decoded,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpu_s_per_gib": {
            name: {
                "median": round(statistics.median(values), 3),
                "vs_core": round(statistics.median(values) / base, 2),
            }
            for name, values in samples.items()
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
