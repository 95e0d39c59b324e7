"""One-file pipelines (profile -> search -> prune -> export -> bench -> check) and CI gates."""
