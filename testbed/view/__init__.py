"""The live web view of a run and its replay (feed: run folder -> frames; server: HTTP on
127.0.0.1 with a per-run token; web/: the page).  Protocol: docs/view-protocol.md."""
