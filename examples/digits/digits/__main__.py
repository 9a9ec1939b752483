"""The image's entrypoint: ``python -m digits [the trainer's flags]``.

One node (the default): the trainer itself, ``digits.train``, in this process. Several nodes
(``trainNodes`` > 1): the Job sets torchrun's own variables in each pod (docs/trainer-contract.md,
"Several nodes": ``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``,
``PET_MASTER_PORT``, ``PET_MAX_RESTARTS``), and this runs ``digits.launch`` (torchrun with the
trainer's exit codes) on ``-m digits.train``. torchrun reads each of its options from its
``PET_<OPTION>`` variable when no flag gives it (torch/distributed/argparse_util.py, class ``env``:
"Get argument values from PET_{dest}"), so no torchrun flag is passed here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from digits import contract, launch, train


def nodes(env: Mapping[str, str]) -> int:
    """How many nodes torchrun is asked for: ``PET_NNODES``, ``N`` or ``MIN:MAX`` (the most); 1 when unset."""
    raw = env.get(contract.ENV_TORCHRUN_NNODES, "").strip()
    if not raw:
        return 1
    try:
        return int(raw.rpartition(":")[2])
    except ValueError:
        raise ValueError(f"{contract.ENV_TORCHRUN_NNODES} must be N or MIN:MAX nodes, got {raw!r}") from None


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = list(sys.argv[1:] if argv is None else argv)
    # A worker torchrun started already is one rank (torchrun sets WORLD_SIZE): it trains, whatever
    # PET_NNODES it inherited from the pod.
    if launch.ENV_WORLD_SIZE in env:
        return train.main(args)
    try:
        several = nodes(env) > 1
    except ValueError as e:
        print(f"python -m digits: {e}", file=sys.stderr)
        return contract.EXIT_ERROR
    if several:
        return launch.main(["-m", "digits.train", *args])
    return train.main(args)


if __name__ == "__main__":
    train.exit_process(main())
