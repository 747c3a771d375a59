"""What every route relies on: settings (every limit, once), FastAPI dependencies, the API's request options,
uploads, the optional token, middleware, the SQLite database and result store, background jobs, JSON bodies."""
