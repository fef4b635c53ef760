"""
Print the parameter reference of every DFF node as Markdown tables.

docs/configuration.md embeds this output; a test keeps the two in sync.
"""
from __future__ import annotations

import sys
from typing import Mapping

from dff_lifecycle.common.parameter_table import Param

NODES = (
    ('FFLayerNode (`/<model>/layer_<i>`)', 'dff_lifecycle.nodes.parameters', 'LAYER_PARAMETERS'),
    ('Server container (`/dff/server_<n>`)', 'dff_lifecycle.nodes.parameters',
     'SERVER_PARAMETERS'),
    ('Master (`/dff/master`)', 'dff_lifecycle.master.parameters', 'MASTER_PARAMETERS'),
    ('Serving node `dff_infer` (`/dff_infer`)', 'dff_lifecycle.serving.parameters',
     'INFER_PARAMETERS'),
    ('Camera stand-in `dff_image_publisher`', 'dff_lifecycle.serving.parameters',
     'PUBLISHER_PARAMETERS'),
    ('Learning from a stream `dff_learn` (`/dff_learn`)', 'dff_lifecycle.serving.parameters',
     'LEARN_PARAMETERS'),
)


def table(params: Mapping[str, Param]) -> str:
    rows = ['| parameter | type | default | range | description |', '|---|---|---|---|---|']
    for name, p in params.items():
        default = 'required' if p.default is None else f'`{p.default!r}`'
        bounds = '' if p.minimum is None and p.maximum is None else \
            f'{"" if p.minimum is None else p.minimum} .. {"" if p.maximum is None else p.maximum}'
        kind = 'string[]' if p.type is list else p.type.__name__
        description = p.description.replace('|', '\\|')
        rows.append(f'| `{name}` | {kind} | {default} | {bounds} | {description} |')
    return '\n'.join(rows)


def reference() -> str:
    import importlib
    parts = []
    for title, module, attribute in NODES:
        params = getattr(importlib.import_module(module), attribute)
        parts.append(f'### {title}\n\n{table(params)}\n')
    return '\n'.join(parts)


def main() -> int:
    sys.stdout.write(reference())
    return 0


if __name__ == '__main__':
    sys.exit(main())
