"""The read-only web view of ``procreg serve``: pages over :class:`~registry.api.AsyncRegistry`.

``pages`` gathers what each page shows (pydantic models, also its JSON), ``charts``
draws the runs charts as plain SVG, ``render`` turns a page into HTML (Jinja2,
autoescaped; Pygments for code and diffs) and ``app`` holds the routes (GET and
HEAD only), the token check and the security headers.
"""
