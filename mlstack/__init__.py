"""mlstack's pure layer: no Pulumi SDK import, so the config loader, the components, the tools
and the tests all read the same facts and rules.

- ``problems``: the one ``Problem`` type and the one formatter for every error message;
- ``validate``: parsers of single config values (a quantity, a CIDR, an image reference);
- ``catalogue``: the clouds' facts (GPU machines, drivers, regions, the trainer's CUDA builds);
- ``capacity``: what a node can hold, per cloud and machine;
- ``rules``: every rule that relates config values, written once;
- ``specs``: the typed values a component is asked to build (what to train, how to serve);
- ``acr_token``: the Entra ID to ACR refresh-token exchange, bounded in time, tries and size.

The app's own interface (port, uid, mounts, env names, exit codes) is ``mlapp.contract``,
inside the image's build context; ``components`` puts ``app/`` on the import path.
"""
