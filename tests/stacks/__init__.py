"""Whole stacks through harness.run_stack, as `pulumi up` would run them."""
