"""The trainer's GPU diagnosis: pure cases, and a real process without CUDA asked for one."""

from __future__ import annotations

from pathlib import Path

import pytest

from digits import contract, cuda

from .helpers import SEED, TRAIN_ARGS, Run, run_trainer

CU128 = cuda.TorchBuild("2.13.0+cu128", "12.8", ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))
CU130 = cuda.TorchBuild("2.13.0", "13.0", ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"))
R535 = cuda.DriverProbe(loaded=True, init_status=0, driver_cuda=(12, 2), device_count=1)
R580 = cuda.DriverProbe(loaded=True, init_status=0, driver_cuda=(13, 0), device_count=1)
T4, V100, P100, H100 = (7, 5), (7, 0), (6, 0), (9, 0)


def test_a_working_gpu_has_no_reason() -> None:
    assert cuda.unusable_reason(CU128, R535, [T4]) is None
    assert cuda.unusable_reason(CU130, R580, [H100]) is None


def test_a_cpu_build_is_named() -> None:
    reason = cuda.unusable_reason(cuda.TorchBuild("2.13.0+cpu", None, ()), R580, [])
    assert reason is not None
    assert "2.13.0+cpu" in reason
    assert "no CUDA support" in reason


def test_no_driver_names_the_loader_path() -> None:
    """GKE mounts the driver at /usr/local/nvidia/lib64 and leaves LD_LIBRARY_PATH to the pod."""
    missing = cuda.DriverProbe(loaded=False, load_error="libcuda.so.1: cannot open shared object file")
    reason = cuda.unusable_reason(CU128, missing, [], ld_library_path="")
    assert reason is not None
    assert reason.startswith("no NVIDIA driver")
    assert "LD_LIBRARY_PATH=''" in reason
    assert "/usr/local/nvidia/lib64" in reason


def test_a_cuda_13_build_on_an_r535_driver_is_too_old() -> None:
    """torch 2.13 from PyPI is CUDA 13; GKE's DEFAULT driver on COS 125 (1.34, 1.35) is R535 (CUDA 12.2)."""
    reason = cuda.unusable_reason(CU130, R535, [T4])
    assert reason is not None
    assert "driver is too old" in reason
    assert "supports CUDA 12.2" in reason
    assert "580" in reason


def test_a_cuda_12_build_runs_on_any_12_driver() -> None:
    """Minor-version compatibility: a 12.x build runs on a 525.60.13+ (CUDA 12.0+) driver."""
    r525 = cuda.DriverProbe(loaded=True, init_status=0, driver_cuda=(12, 0), device_count=1)
    assert cuda.unusable_reason(CU128, r525, [T4]) is None
    r470 = cuda.DriverProbe(loaded=True, init_status=0, driver_cuda=(11, 4), device_count=1)
    assert "too old" in (cuda.unusable_reason(CU128, r470, [T4]) or "")


def test_no_gpu_visible() -> None:
    none = cuda.DriverProbe(loaded=True, init_status=cuda.CUDA_ERROR_NO_DEVICE, driver_cuda=(12, 2))
    assert "sees no GPU" in (cuda.unusable_reason(CU128, none, []) or "")


@pytest.mark.parametrize(("capability", "name"), [(V100, "sm_70"), (P100, "sm_60")])
def test_a_gpu_older_than_the_build_is_named(capability: tuple[int, int], name: str) -> None:
    reason = cuda.unusable_reason(CU128, R535, [capability])
    assert reason is not None
    assert "GPU is too old" in reason
    assert name in reason


def test_runnable_capability_follows_sass_and_ptx_rules() -> None:
    assert cuda.runnable_capability((8, 9), ("sm_80",))  # SASS runs on later minors of its major
    assert not cuda.runnable_capability((9, 0), ("sm_80",))  # never across majors
    assert cuda.runnable_capability((9, 0), ("sm_80", "compute_80"))  # PTX is compiled forward
    assert not cuda.runnable_capability((7, 0), ("sm_75", "compute_75"))


def test_probe_of_a_missing_library_does_not_raise() -> None:
    probe = cuda.probe_driver("libcuda-that-does-not-exist.so.1")
    assert not probe.loaded
    assert "libcuda-that-does-not-exist" in probe.load_error


def test_trainer_asked_for_a_gpu_without_cuda_fails_fast_naming_the_cause(tmp_path: Path) -> None:
    """Bug: a GPU node whose CUDA did not come up trained on CPU and succeeded, hiding the defect.

    This process has no CUDA (a CPU torch, no driver): asked for cuda as the Job asks
    (MLAPP_DEVICE), the trainer exits 1 with the cause and writes nothing.
    """
    run = Run.under(tmp_path, "gpu")
    result = run_trainer(run, *TRAIN_ARGS, "--seed", str(SEED), env={contract.ENV_DEVICE: "cuda"})
    assert result.returncode == contract.EXIT_ERROR, result.stdout + result.stderr
    assert "a GPU was requested but CUDA cannot be used" in result.stdout
    assert "no CUDA support" in result.stdout or "no NVIDIA driver" in result.stdout
    assert "held-out accuracy" not in result.stdout  # it did not train
    assert list(run.output_dir.iterdir()) == []


def test_trainer_on_cpu_trains_without_asking_for_cuda(tmp_path: Path) -> None:
    run = Run.under(tmp_path, "cpu")
    result = run_trainer(run, *TRAIN_ARGS, "--epochs", "1", "--seed", str(SEED), env={contract.ENV_DEVICE: "cpu"})
    assert result.returncode == contract.EXIT_OK, result.stdout + result.stderr
    assert "device cpu" in result.stdout
