"""Store adapters: the only modules that import a database driver."""
