"""What one run asks of a cluster: a preset's ``[cluster.slurm]`` and ``[cluster.ray]`` tables.

The workspace's ``[slurm]`` / ``[ray]`` tables of ``settings.toml`` stay the defaults; a preset (or ``tltui
queue add --set cluster.slurm.partition=gpu``) overrides them for its runs. Unset fields keep the workspace's
value. The executors read a run's resolved ``preset.toml`` with :func:`for_run` (no preset validation, no
pydantic model of the whole preset: the runner stays light).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SlurmRun(_Strict):
    """``[cluster.slurm]``: this run's Slurm job (unset: ``[slurm]`` of settings.toml)."""

    partition: str | None = Field(None, min_length=1, description="`#SBATCH --partition`")
    account: str | None = Field(None, min_length=1, description="`#SBATCH --account`")
    qos: str | None = Field(None, min_length=1, description="`#SBATCH --qos`")
    constraint: str | None = Field(None, min_length=1, description="`#SBATCH --constraint`")
    time_limit: int | None = Field(None, ge=1, description="minutes (`#SBATCH --time`)")
    mem_gb: float | None = Field(None, gt=0, description="memory per job, GB (`#SBATCH --mem`)")
    cpus_per_task: int | None = Field(None, ge=1, description="CPUs per job")
    gres: str | None = Field(
        None, min_length=1, description="`#SBATCH --gres`, e.g. `gpu:a100:1` (replaces the GPU count of train.gpus)"
    )
    array: bool | None = Field(
        None, description="a sweep's runs queued together go as one Slurm job array (`#SBATCH --array`)"
    )
    array_limit: int | None = Field(
        None, ge=1, description="at most this many of the array's runs at once (`--array=0-N%K`); implies array"
    )

    def wants_array(self) -> bool:
        return bool(self.array) or (self.array is None and self.array_limit is not None)


class RayRun(_Strict):
    """``[cluster.ray]``: this run's Ray job (unset: ``[ray]`` of settings.toml)."""

    num_cpus: float | None = Field(None, ge=0, description="CPUs the job reserves")
    memory_gb: float | None = Field(None, gt=0, description="memory the job reserves, GB")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description='custom Ray resources the job reserves, e.g. `{ "accelerator_type:A100" = 1 }`',
    )


class ClusterConfig(_Strict):
    """``[cluster]``: what this preset's runs ask of a cluster, per executor; ignored by local runs."""

    slurm: SlurmRun = Field(default_factory=SlurmRun, description="Slurm job options of these runs")
    ray: RayRun = Field(default_factory=RayRun, description="Ray job resources of these runs")

    def is_empty(self) -> bool:
        return self == ClusterConfig()


def for_run(preset_path: str | Path) -> ClusterConfig:
    """The ``[cluster]`` table of a run's resolved ``preset.toml`` (validated when it was queued); an unreadable
    one counts as empty (the workspace's settings apply)."""
    try:
        data: dict[str, Any] = tomllib.loads(Path(preset_path).read_text(encoding="utf-8"))
        return ClusterConfig.model_validate(data.get("cluster") or {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValidationError):
        return ClusterConfig()
