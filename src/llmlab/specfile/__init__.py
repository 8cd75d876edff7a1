"""One kit for the files users write: task files, probe suites and the judges' word lists.

``yaml`` is the one YAML 1.2 reader (``yes``/``no`` stay words, mappings remember their lines,
duplicate keys are refused) with ``Where``, which turns a problem into ``file, line N: message`` and
checks the common shapes (unknown keys with did-you-mean, whole numbers). ``templates`` is the one
sandboxed jinja2 renderer for the templates in those files. Chat templates are not user templates:
they follow the model's own rules and keep their environment in ``llmlab.chat``.
"""

from .templates import check_template, render, template_attributes, template_variables
from .yaml import LineDict, Where, load, parse

__all__ = ["LineDict", "Where", "check_template", "load", "parse", "render", "template_attributes",
           "template_variables"]
