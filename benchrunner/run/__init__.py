"""Executing a sweep: suite -> cases -> executor/worker -> modes -> rows."""
