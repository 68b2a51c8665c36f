# The suite's spec modules are test_*.py files that take a `saver` its runner hands them;
# tests/test_langgraph.py runs them through that runner, so pytest must not collect them.
collect_ignore_glob = ["conformance/*"]
