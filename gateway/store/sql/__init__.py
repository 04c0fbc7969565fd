"""The repositories as SQL, written once for both backends.

Statements use `?` placeholders and the SQL common to SQLite and PostgreSQL; `Conn`
translates placeholders for psycopg, and the few places where the dialects differ ask
`conn.dialect` (or a backend overrides the method). See docs/architecture.md.
"""
