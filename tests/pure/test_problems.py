"""mlstack.problems: one way to say what is wrong, wherever a rule fires."""

from __future__ import annotations

from mlstack.problems import Problem, config_key, format_problem, format_problems


def test_a_problem_names_the_key_its_value_and_why() -> None:
    assert format_problem(Problem("replicas", 0, "must be between 1 and 100")) == (
        "mlstack:replicas = 0: must be between 1 and 100"
    )
    assert str(Problem("appName", "ML", "must be lower-case")) == "mlstack:appName = 'ML': must be lower-case"


def test_a_secret_problem_never_echoes_its_value() -> None:
    problem = Problem("basicAuthPassword", "hunter2hunter2", "must be at least 12 characters", show_value=False)
    assert format_problem(problem) == "mlstack:basicAuthPassword must be at least 12 characters"
    assert "hunter2" not in format_problems("invalid stack configuration", [problem])


def test_a_key_of_another_namespace_keeps_it() -> None:
    assert config_key("trainerGpus") == "mlstack:trainerGpus"
    assert config_key("kubernetes:context") == "kubernetes:context"


def test_the_heading_counts_the_problems_and_lists_each_on_its_line() -> None:
    one = Problem("replicas", 0, "must be between 1 and 100")
    other = "GkeGpuCluster name 'X': must be 1-10 lower-case letters, digits or '-'"
    assert format_problems("invalid stack configuration", [one]) == (
        "invalid stack configuration (1 problem):\n  - mlstack:replicas = 0: must be between 1 and 100"
    )
    assert format_problems("cannot build the GKE cluster", [one, other]).splitlines() == [
        "cannot build the GKE cluster (2 problems):",
        "  - mlstack:replicas = 0: must be between 1 and 100",
        f"  - {other}",
    ]
