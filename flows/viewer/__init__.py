"""The run viewer: a page that draws a run's attribution graph and re-prunes it live.

`data` turns a recorded run into what the page shows, `page` assembles the page (our own CSS and
JavaScript in `assets/`, inlined), `server` serves it for one run on 127.0.0.1.
"""
