"""torchrun, with the trainer's exit codes: how each pod of a multi-node training Job starts.

    python -m digits.launch <torchrun's options> -m digits.train <the trainer's arguments>

``python -m digits`` (the image's entrypoint) runs it when the Job asks for several nodes, with
torchrun's options taken from the Job's ``PET_*`` variables (digits.__main__).

The options are torchrun's own (https://pytorch.org/docs/stable/elastic/run.html), passed to
``torch.distributed.run`` unchanged: this module adds no rendezvous and no restarts of its own.
It exists for one reason: torchrun ends with an exception whatever its workers' exit codes were
(``torch.distributed.run.run`` raises ``ChildFailedError``, torch/distributed/elastic/multiprocessing/
errors/__init__.py), so its process always exits 1, while the Job's pod failure policy reads the
trainer's codes (docs/trainer-contract.md, "Exit codes"; digits.contract): 2, the gate, fails the Job
at once; 3, stopped because another rank failed, is not counted against the Job's retries.
``exit_code`` maps the workers' codes back to the pod's.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from digits import contract

log = logging.getLogger("digits.launch")

# What torchrun sets in each worker's environment
# (https://pytorch.org/docs/stable/elastic/run.html#environment-variables).
ENV_RANK = "RANK"
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_LOCAL_RANK = "LOCAL_RANK"


@dataclass(frozen=True)
class Rank:
    """Where this process stands in its training group; one process alone is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one that evaluates the gate, writes checkpoints and writes the outputs."""
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Rank:
        """The rank torchrun gave this worker; without torchrun's variables, a process alone."""
        env = os.environ if environ is None else environ
        if ENV_WORLD_SIZE not in env:
            return cls()
        try:
            rank = cls(int(env[ENV_RANK]), int(env[ENV_WORLD_SIZE]), int(env.get(ENV_LOCAL_RANK, "0")))
        except (KeyError, ValueError) as e:
            raise ValueError(
                f"torchrun's {ENV_RANK}, {ENV_WORLD_SIZE} and {ENV_LOCAL_RANK} must be integers: {e}"
            ) from None
        if not 0 <= rank.rank < rank.world_size or rank.local_rank < 0:
            raise ValueError(f"rank {rank.rank} is not one of a world of {rank.world_size}")
        return rank


def exit_code(worker_codes: Mapping[int, int]) -> int:
    """The pod's exit code from its failed workers' (global rank: exit code; a signal is negative).

    The gate wins (every rank exits with rank 0's verdict); a pod whose workers all stopped for a
    peer says so; anything else, a signal included, is this pod's own error.
    """
    codes = set(worker_codes.values())
    if contract.EXIT_GATE in codes:
        return contract.EXIT_GATE
    if codes == {contract.EXIT_PEER}:
        return contract.EXIT_PEER
    return contract.EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
    # torch takes seconds to import, and is only needed here.
    from torch.distributed import DistError  # noqa: PLC0415
    from torch.distributed import run as torchrun  # noqa: PLC0415
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.elastic.rendezvous.api import RendezvousError  # noqa: PLC0415

    args = torchrun.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        torchrun.run(args)
    except ChildFailedError as e:
        codes = {rank: failure.exitcode for rank, failure in e.failures.items()}
        code = exit_code(codes)
        log.error("workers failed (rank: exit code) %s; this pod exits %d", codes, code)
        return code
    except (RendezvousError, DistError) as e:
        # The store on index 0's pod could not be reached or did not fill in time: index 0 is being
        # replaced, or another pod is not there yet. Not this pod's fault; the Job's deadline bounds it.
        log.error("rendezvous failed: %s; this pod exits %d", " ".join(str(e).split()), contract.EXIT_PEER)
        return contract.EXIT_PEER
    return contract.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
