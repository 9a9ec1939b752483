"""mlstack.catalogue: the clouds' GPU machines and VM sizes, and the parsers that look a value up in them."""

from __future__ import annotations

import pytest

from mlstack import catalogue
from mlstack.clouds import azure, gcp


@pytest.mark.parametrize(
    ("size", "model", "gpus"),
    [
        ("Standard_NC4as_T4_v3", "nvidia-tesla-t4", 1),
        ("Standard_NC16as_T4_v3", "nvidia-tesla-t4", 1),
        ("Standard_NC64as_T4_v3", "nvidia-tesla-t4", 4),
        ("Standard_NC24ads_A100_v4", "nvidia-a100-80gb", 1),
        ("Standard_NC96ads_A100_v4", "nvidia-a100-80gb", 4),
        ("Standard_NC40ads_H100_v5", "nvidia-h100-nvl", 1),
        ("Standard_NC80adis_H100_v5", "nvidia-h100-nvl", 2),
        ("Standard_ND96asr_v4", "nvidia-a100-40gb", 8),
        ("Standard_ND96isr_H100_v5", "nvidia-h100-80gb", 8),
    ],
)
def test_catalogue_gives_each_azure_size_its_gpu_and_count(size: str, model: str, gpus: int) -> None:
    entry = azure.azure_gpu_size(size)
    assert (entry.gpu_model, entry.gpus) == (model, gpus), f"{size}: {entry}"


def test_catalogue_names_are_azure_vm_sizes() -> None:
    for size, entry in azure.AZURE_GPU_SIZES.items():
        assert azure.azure_vm_size(size) == size
        assert entry.gpus >= 1, f"{size} carries no GPU"


def test_an_unknown_azure_size_is_refused_with_the_choices_or_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"is not a GPU VM size: the GPU pool needs one of Standard_NC4as_T4_v3"):
        azure.azure_gpu_size("gpu-large")
    with pytest.raises(ValueError, match=r"did you mean Standard_NC4as_T4_v3\?"):
        azure.azure_gpu_size("Standard_NC4as_T4_v2")
    with pytest.raises(ValueError, match=r"retired by Azure on 2025-09-30"):
        azure.azure_gpu_size("Standard_NC6s_v3")


def test_an_azure_region_in_display_form_is_pointed_at_its_name() -> None:
    assert azure.azure_location("westeurope") == "westeurope"
    with pytest.raises(ValueError, match=r"did you mean westeurope\?"):
        azure.azure_location("West Europe")


def test_gcp_counts_per_machine() -> None:
    """The counts the catalogue holds, for the machine types the brief names."""
    l4 = gcp.GCP_ACCELERATORS["nvidia-l4"]
    assert {m: l4.counts_for(m) for m in ("g2-standard-4", "g2-standard-32", "g2-standard-96")} == {
        "g2-standard-4": (1,),
        "g2-standard-32": (1,),
        "g2-standard-96": (8,),
    }
    assert gcp.GCP_ACCELERATORS["nvidia-tesla-v100"].counts_for("n1-standard-8") == (1, 2, 4, 8)
    assert {a.family for a in gcp.GCP_ACCELERATORS.values()} == {"n1", "g2", "a2", "a3"}


def test_the_choices_a_cloud_accepts() -> None:
    assert gcp.GKE_RELEASE_CHANNELS == ("RAPID", "REGULAR", "STABLE", "EXTENDED")
    assert azure.AKS_UPGRADE_CHANNELS == ("none", "patch", "stable", "rapid", "node-image")
    assert azure.ACR_SKUS == ("Basic", "Standard", "Premium")
    assert catalogue.IMAGE_PLATFORMS == ("linux/amd64", "linux/arm64")
    assert catalogue.CLOUD_IMAGE_PLATFORM == "linux/amd64"  # every GPU machine in the catalogue is x86-64


def test_a_size_without_a_gpu_is_named_so_and_never_matched_to_a_gpu_machine() -> None:
    """Finding: Standard_D4s_v5 was answered "did you mean Standard_ND96asr_v4?", an 8-GPU A100 machine."""
    with pytest.raises(ValueError, match="has no GPU") as caught:
        azure.azure_gpu_size("Standard_D4s_v5")
    assert str(caught.value).startswith("has no GPU: the D series is not one of Azure's GPU families")
    assert "did you mean" not in str(caught.value)


def test_suggestions_stay_within_the_family_asked_for() -> None:
    with pytest.raises(ValueError, match=r"did you mean Standard_ND96asr_v4\?"):
        azure.azure_gpu_size("Standard_ND96asr")
    with pytest.raises(ValueError, match="is not a GPU VM size") as caught:  # nothing like any NC listed: no guess
        azure.azure_gpu_size("Standard_NC6")
    assert "did you mean" not in str(caught.value)
    with pytest.raises(ValueError, match=r"GRID driver"):
        azure.azure_gpu_size("Standard_NV36ads_A10_v5")
