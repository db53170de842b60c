"""Repository functions: keyword-only arguments, a session passed in, no commit inside unless
the name says so. Callers own the transaction."""
