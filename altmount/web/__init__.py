"""The HTTP side: one Twisted site with WebDAV, /live and the reserved API mounts."""
