"""mlstack: read the stack's config, build the cluster target, the images and the workloads, export."""

from __future__ import annotations

import pulumi

from stack import config, wiring

cfg = config.load()
target = wiring.build_target(cfg)
trainer_image, server_image = wiring.app_images(cfg, target)
workloads = wiring.workloads(cfg, target, trainer_image, server_image)
for name, value in wiring.stack_outputs(cfg, target, workloads, trainer_image, server_image).items():
    pulumi.export(name, value)
