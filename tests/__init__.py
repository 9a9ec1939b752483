"""mlstack's tests, by level, as the code is layered (the README's "Layout"):

- ``pure/``: the pure layer and the components' pure builders, called directly, no Pulumi mocks;
- ``components/``: one component at a time, under the harness's mocks;
- ``stacks/``: whole stacks through ``harness.run_stack``, as ``pulumi up`` would run them;
- ``project/``: the repository's own files (Pulumi.yaml, README, workflows, the policy pack's);
- ``app/``: the app itself (its own conftest).

Shared scaffolding lives once: ``support.py`` (stacks, types, pod spec, toleration matcher)
and ``conftest.py`` (the fixtures that run stacks).
"""

import pytest

# Their asserts explain themselves as a test's do.
pytest.register_assert_rewrite("tests.support", "tests.args")
