"""The policy pack as the Pulumi CLI runs it: its files, its declared rules, and serving the engine on its own.

It runs in its own virtualenv (policy/venv, from policy/requirements.txt). The rules
on the shipped stacks: tests/stacks/test_policy.py; the rules alone:
tests/pure/test_policy_rules.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from policy import rules
from tests.support import in_pack_venv, policy_python
from tools import harness

PACK = harness.ROOT / "policy"


def test_the_pack_declares_every_rule_with_its_level() -> None:
    declared = in_pack_venv(
        """
        import json
        from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy
        from policy import __main__ as pack
        policies = pack.policies()
        kinds = {ResourceValidationPolicy: "resource", StackValidationPolicy: "stack"}
        print(json.dumps({p.name: [p.enforcement_level.value, bool(p.description), kinds[type(p)]] for p in policies}))
        """
    )
    assert declared == {
        "gpu-pods-tolerate-gpu-taint": ["mandatory", True, "resource"],
        "gpu-pools-carry-gpu-taint": ["mandatory", True, "resource"],
        "deployments-have-probes-and-limits": ["mandatory", True, "resource"],
        "non-root": ["mandatory", True, "resource"],
        "image-digest": ["mandatory", True, "resource"],
        "configmaps-hold-no-secrets": ["mandatory", True, "resource"],
        "secret-types": ["mandatory", True, "resource"],
        "pod-security-restricted": ["mandatory", True, "resource"],
        "namespaces-enforce-restricted": ["mandatory", True, "resource"],
        "load-balancer-source-ranges": ["advisory", True, "resource"],
        "gpu-pools-scale-to-zero": ["advisory", True, "resource"],
        "network-policy-selects-every-pod": ["mandatory", True, "stack"],
        "servers-only-read-the-store": ["mandatory", True, "stack"],
    }


def test_the_pack_files_name_a_python_pack_and_its_sdk() -> None:
    assert re.search(r"(?m)^runtime:\n  name: python$", (PACK / "PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert "pulumi-policy==" in (PACK / "requirements.txt").read_text(encoding="utf-8")


def test_the_pack_serves_the_engine_on_its_own(tmp_path: Path) -> None:
    """As the CLI runs it: the pack's folder alone (not the repository) on the path, spoken to over gRPC."""
    import grpc  # type: ignore[import-untyped]
    from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    server = subprocess.Popen(
        [str(policy_python()), "-c", code, str(PACK)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().decode().strip()
        assert port.isdigit(), f"the pack did not start: {port!r}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            levels = {p.name: analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel) for p in info.policies}
            assert info.name == "mlstack"
            assert levels == {name: r.level.upper() for name, r in rules.RULES_BY_NAME.items()}
            job = struct_pb2.Struct()
            job.update({
                "metadata": {"name": "train"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "trainer", "image": "trainer:1.0", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
                ]}}},
            })  # fmt: skip
            request = analyzer_pb2.AnalyzeRequest(
                type="kubernetes:batch/v1:Job", properties=job, urn="urn:pulumi:s::p::kubernetes:batch/v1:Job::t"
            )
            response = stub.Analyze(request, timeout=30)
            # The same Job as the whole stack, without a NetworkPolicy: the stack rules judge it.
            resource = analyzer_pb2.AnalyzerResource(type=request.type, properties=job, urn=request.urn, name="t")
            stack = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[resource]), timeout=30)
        found = {(d.policyName, analyzer_pb2.EnforcementLevel.Name(d.enforcementLevel)) for d in response.diagnostics}
        assert found == {
            ("gpu-pods-tolerate-gpu-taint", "MANDATORY"),
            ("non-root", "MANDATORY"),
            ("image-digest", "MANDATORY"),
            ("pod-security-restricted", "MANDATORY"),
        }
        assert any("add the toleration {key: nvidia.com/gpu" in d.message for d in response.diagnostics)
        assert {d.policyName for d in stack.diagnostics} == {"network-policy-selects-every-pod"}
        assert "Job train (pods without labels): no NetworkPolicy in namespace default isolates them" in (
            stack.diagnostics[0].message
        )
    finally:
        server.kill()
        server.wait()
