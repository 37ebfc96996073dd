"""Import strategies: the links Sonarr/Radarr import instead of the files on the mount.

`plan` says where each link goes and what it holds (no I/O), `tokens` keeps the
per-file STRM tokens, `writer` puts links on disk and removes them, `web`
serves a file to whoever holds its token.
"""
