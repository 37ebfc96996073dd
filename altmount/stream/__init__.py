"""Serving byte ranges: HTTP range selection, segment fetching, backpressured streaming."""
