"""The `jobgate` command line: above `gateway` and `worker`, which it runs, and `shared`."""
