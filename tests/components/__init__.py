"""One component at a time under the harness's mocks: the resources it registers and what it refuses."""
