"""The app's routes: ``api`` (JSON under /api) and ``pages`` (server-rendered HTML, downloads)."""
