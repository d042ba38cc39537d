"""Model zoo: bundled benchmarks, their networks, data and committed weights."""
