"""All Hub I/O goes through this package: publishing versioned artefacts and reading them back.

Two targets behind one API (`Hub`): a local hub root, the offline default, and the Hugging Face Hub (or
any server speaking its API). `open_hub(uri)` picks one: nothing or a folder path -> local hub;
`hf` -> the Hub at HF_ENDPOINT (huggingface.co by default); an http(s) URL -> that endpoint.
"""

from medssr_hub.hub.common import RUN_CONFIG, Hub, HubError, PublishResult, VersionExistsError, build_manifest
from medssr_hub.hub.local import LocalHub
from medssr_hub.hub.publishing import (
    HUB_ROOT_ENV,
    StageRelease,
    check_publishable,
    default_hub_root,
    open_hub,
    publish,
)
from medssr_hub.hub.remote import RemoteHub

__all__ = [
    "HUB_ROOT_ENV",
    "Hub",
    "HubError",
    "LocalHub",
    "PublishResult",
    "RemoteHub",
    "StageRelease",
    "VersionExistsError",
    "RUN_CONFIG",
    "build_manifest",
    "check_publishable",
    "default_hub_root",
    "open_hub",
    "publish",
]
