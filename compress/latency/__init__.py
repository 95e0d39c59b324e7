"""Per-device latency tables, prediction, roofline estimates and validation."""
