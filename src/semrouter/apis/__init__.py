"""The client APIs semrouter serves besides chat completions, one module each.

Every one is a `semrouter.pipeline.api.ClientApi`: pure translation of its request into the
pipeline's chat form, of the backend's chat completion back (a `ResponseRewriter`), and its
error shape. The transports (proxy/app.py, extproc/server.py) look the API up by path in
`BY_PATH` and hand it to `Pipeline.prepare`: one pipeline, one routing, for all of them.
"""

from semrouter.apis.anthropic import AnthropicMessages
from semrouter.apis.completions import Completions
from semrouter.apis.embeddings import Embeddings
from semrouter.apis.responses import Responses
from semrouter.pipeline.api import ClientApi

APIS: tuple[ClientApi, ...] = (AnthropicMessages(), Responses(), Completions(), Embeddings())
BY_PATH: dict[str, ClientApi] = {api.path: api for api in APIS}

__all__ = [
    "APIS",
    "BY_PATH",
    "AnthropicMessages",
    "ClientApi",
    "Completions",
    "Embeddings",
    "Responses",
]
