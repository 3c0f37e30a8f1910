"""The web console: registry, runs with curves, data manifests, a playground and live operations in a browser.

``leptonkit console`` serves it on its own (``--server URL`` names the ``leptonkit serve`` its playground and
operations pages talk to); ``leptonkit serve ... --console`` mounts it at ``/console`` beside the API, as that
server's own console.

What it is built with, and why: pages are rendered on the server with Jinja2 (already a dependency of torch) and
work without JavaScript, except the three things a page cannot do alone: streaming a chat reply, drawing word
attributions and refreshing the operations numbers, done by one small vanilla script (``resources/console/static/
console.js``). Charts are SVG drawn on the server (``charts.py``, ``lineage.py``): nothing to vendor or build, no
CDN, every point an element a test can count. There is no JavaScript framework to keep up to date.

Security: log-in with an API key that becomes a server-side session behind an HttpOnly, SameSite=Strict cookie
(``sessions.py``); state-changing actions are POSTs carrying a CSRF token; a Content-Security-Policy without inline
script or style on every response (``app.py``); admin actions need an admin key and go to the audit log.
"""
