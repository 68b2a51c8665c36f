"""Wire messages as msgspec Structs: the one source of truth for every shape."""
