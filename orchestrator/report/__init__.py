"""Report: what a folder's store says, for people: the HTML contact sheet (``html``) and ``status`` tables."""
