-- The agent's long-term memory store (LangGraph's BaseStore) in PostgreSQL: an item, its
-- vectors and its text index change in one transaction, so no reader ever sees an item
-- without its vectors or the reverse. pgvector is required (ConfigError otherwise).
CREATE EXTENSION IF NOT EXISTS vector;

-- `path`: the namespace's labels each followed by U+001F, in the C collation, so a
-- namespace prefix is a btree range (`path >= p AND path < p_end`).
CREATE TABLE store_items (
    agent_id text NOT NULL,
    path text COLLATE "C" NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz,
    ttl_minutes double precision,
    -- Search order without a query: a namespace's first write, then the item's first put
    -- (LangGraph's in-memory store's order, which an update keeps).
    ns_seq bigint NOT NULL,
    seq bigint NOT NULL,
    -- Every string of the value, for full-text search (kept by the put, not GENERATED:
    -- COPY-based backups carry it as a column like any other).
    search tsvector NOT NULL,
    PRIMARY KEY (agent_id, path, key)
);
CREATE INDEX store_items_order ON store_items (agent_id, ns_seq, seq);
CREATE INDEX store_items_text ON store_items USING gin (search);
CREATE INDEX store_items_expires ON store_items (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE store_namespaces (
    agent_id text NOT NULL,
    path text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (agent_id, path)
);

-- One row per embedded text of an item (`vector_path`: `$` or the field path). Vectors of
-- any dimension share the table; each dimension in use has its own partial HNSW index over
-- `embedding::vector(dims)` (created when the first vector of that size is put, recorded in
-- store_dims), so models of different sizes coexist in one agent's store.
CREATE TABLE store_vectors (
    agent_id text NOT NULL,
    path text COLLATE "C" NOT NULL,
    key text NOT NULL,
    vector_path text NOT NULL,
    dims integer NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (agent_id, path, key, vector_path),
    FOREIGN KEY (agent_id, path, key) REFERENCES store_items ON DELETE CASCADE
);
CREATE INDEX store_vectors_agent ON store_vectors (agent_id, dims, path);

CREATE TABLE store_dims (
    dims integer PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- LangGraph's numeric comparison ($gt ...): Python's float(x) of a JSON value, NULL when it
-- has none (then no comparison matches).
CREATE FUNCTION store_number(v jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN (v #>> '{}')::double precision
        WHEN 'boolean' THEN CASE WHEN (v #>> '{}')::boolean THEN 1.0 ELSE 0.0 END
        WHEN 'string' THEN CASE WHEN btrim(v #>> '{}') ~* '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$'
                                THEN btrim(v #>> '{}')::double precision END
    END
$$;
