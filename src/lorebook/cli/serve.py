"""`lorebook serve`: the OpenAI-compatible API, the voice WebSocket and the web page in one process.

The flags are generated from ServeConfig's fields and their help, like `teach` does with TeachConfig,
and the settings (without the key) are saved as serve-config.json in the data dir.
"""

from __future__ import annotations

import dataclasses
import inspect

import typer

from lorebook.cli.common import err_console, friendly_errors
from lorebook.serve.config import ServeConfig

_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "str | None": str}


def _config_options() -> list[inspect.Parameter]:
    params = []
    for item in dataclasses.fields(ServeConfig):
        flag = "--" + item.name.replace("_", "-")
        annotation = _TYPES.get(str(item.type), str)
        decls = [f"{flag}/--no-{flag[2:]}"] if annotation is bool else [flag]
        if item.name == "api_key":
            decls.append("--key")
        option = typer.Option(item.default, *decls, help=item.metadata["help"],
                              envvar="LOREBOOK_API_KEY" if item.name == "api_key" else None)
        params.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation | None if item.default is None else annotation))
    return params


def serve(**values) -> None:
    """Serve the API (/v1/…), the voice socket and the web page; binds 127.0.0.1 unless told otherwise."""
    from lorebook import paths

    config = ServeConfig(**values)
    config.check()  # refuse 0.0.0.0 without a key before loading anything
    import uvicorn

    from lorebook.serve.app import create_app

    config.save(paths.subdir("serve"))
    app = create_app(config)
    if config.preload:
        from lorebook.serve.chat import load_target_engine, resolve_target

        with err_console.status(f"loading the {config.persona} persona's model…"):
            load_target_engine(resolve_target(None, config.persona), config.engine)
    key_hint = "?key=YOUR_KEY" if config.api_key else ""
    err_console.print(f"lorebook is listening on [bold]{config.url()}{key_hint}[/] "
                      f"(OpenAI base_url {config.url()}v1); Ctrl-C stops it")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", ws_max_size=1 << 20,
                timeout_graceful_shutdown=3)


serve.__signature__ = inspect.Signature(_config_options())


def register(app: typer.Typer) -> None:
    app.command("serve")(friendly_errors(serve))
