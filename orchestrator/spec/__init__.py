"""Spec: the YAML a production writes, read with its lines, checked, templated and resolved into shots.

``load`` reads a project (``yamlsource`` keeps file:line, ``schema`` checks its shape, ``templating`` renders the
prompts in a sandbox, ``images`` reads the boards) into a ``ResolvedProject`` of ``ResolvedShot`` values (``shot``);
``fingerprint`` says what a render's request is, so that ``plan`` can tell new from unchanged.
"""
