"""LangGraph's checkpointer conformance suite as its main branch has it (`conformance/`,
vendored unchanged but for its imports; commit in SOURCE, MIT licence in LICENSE), run by
tests/test_langgraph.py beside the released `langgraph-checkpoint-conformance` package, which
lags behind it (no `delta_channel_history` in 0.0.2). Refresh: see refresh.py."""
