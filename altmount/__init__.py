"""altmount: stream Usenet releases over WebDAV, fetching only the articles a read needs."""

__version__ = "0.1.0"
