"""The pure layer (mlstack: rules, catalogue, capacity…) and the components' pure builders, without mocks."""
