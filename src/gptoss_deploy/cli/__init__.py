"""Command line: translates flags into library calls; `main` is the only error boundary."""
