"""Imported by the worker forkserver only: warms the parser so forked workers start fast."""

from rewards.math._worker import warm

warm()
