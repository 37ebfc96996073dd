"""`python benchmarks/fakeserver.py --out DIR ...`: the fake NNTP server of `altmount bench`.

Kept as a script for the CLI and queue integration tests, which run it in its own
process; the implementation and its options are in `altmount.bench.fakeserver`.
"""

from altmount.bench.fakeserver import main

if __name__ == "__main__":
    main()
