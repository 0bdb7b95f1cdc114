"""The detector end to end: files -> preprocessing -> stage 1 -> stage 2 -> results."""
