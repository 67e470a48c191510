"""The playground: the lecture's tricks live in a browser, driven by the real library.

``dltricks serve`` starts a local web app (Starlette on uvicorn) with two pages in one:

- **Error surfaces**: up to four optimizers from a clicked start point on a 2-D surface,
  their trajectories animated over the contour plot, their loss curves beside it
  (:mod:`dltricks.serve.surfaces`, which runs :mod:`dltricks.surfaces`);
- **Network lab**: an MLP trained live in a background thread by :func:`dltricks.train.fit`,
  with train/validation loss and accuracy per epoch and the per-layer gradient norms as a heat
  map, two runs side by side (:mod:`dltricks.serve.jobs`).

The page uses only the JSON API of :mod:`dltricks.serve.app`, and its chart library (Chart.js,
MIT, in ``static/``) ships with the package: nothing is fetched from the network.
"""

from __future__ import annotations

from pathlib import Path

from dltricks.serve.app import create_app

__all__ = ["create_app", "serve"]


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    open_browser: bool = False,
    report_dir: str | Path | None = None,
) -> None:
    """Serve the playground on ``host:port`` until interrupted (binds to this machine only
    unless ``host`` says otherwise); ``open_browser`` opens it in the default browser.

    Raises:
        OSError: the address cannot be bound (a port in use, an unknown host).
    """
    import socket
    import threading
    import webbrowser

    import uvicorn

    # A port in use fails here with the OSError that names it, before the server starts its
    # background imports (uvicorn would log it and exit).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:  # named as host:port, the "file" the error is about
            raise OSError(error.errno, error.strerror or str(error), f"{host}:{port}") from None
    app = create_app(report_dir=report_dir)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    if open_browser:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"http://{shown}:{port}/"

        def open_when_started() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_started, daemon=True).start()
    server.run()
