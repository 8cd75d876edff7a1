"""YAML for user files, with YAML 1.2's booleans: only ``true`` and ``false``.

PyYAML follows YAML 1.1, where ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n`` (any case) are
booleans. In a task or suite file those are labels and answers ("Is it spam? yes / no"), and a label
``no`` silently becoming ``False`` gives wrong verdicts. This loader reads them as strings.

    >>> import yaml
    >>> yaml.load("labels: [yes, no, On]\\nflag: true", Loader=Loader)
    {'labels': ['yes', 'no', 'On'], 'flag': True}
"""

from __future__ import annotations

import re

import yaml

BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", BOOL, list("tTfF"))


def safe_load(text: str):
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
