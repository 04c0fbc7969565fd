"""The web console (issue 18): a Chinese back office in the browser, served by the gateway's
own HTTP server at `/` beside the API, over the same domain services as the CLI and the API.

`gateway.console.setup.setup_console(app, deps)` adds its pages, static files (CSS, the
console's script, ECharts and htmx vendored from npm: halls have no internet) and middleware
to the API's aiohttp app; gateway.api.make_app calls it when [console] is enabled. Nothing is
imported here, so a gateway without a console never loads the console's modules (Jinja2,
Argon2). docs/console.md.
"""
