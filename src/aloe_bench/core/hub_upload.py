"""One upload to the Hub: create the repo if it is missing, then upload a finished folder as a single commit.

Every `push` of the project (model checkpoints, datasets, Spaces) goes through here, so each fails the same way:
one line naming the folder and the repo, with nothing pushed and the folder left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import HubUploadError


def upload_folder_once(folder: str | Path, repo_id: str, *, repo_type: str, commit_message: str, private: bool = False,
                       token: str | None = None, error: type[Exception] = HubUploadError,
                       before_upload: Callable[[], object] | None = None, **repo_options) -> str:
    """`create_repo(exist_ok=True)` + `upload_folder`: one commit. Returns the commit URL; failures raise `error`.

    `token=None` lets huggingface_hub use HF_TOKEN or the cached login; `repo_options` go to `create_repo`
    (e.g. `space_sdk="gradio"`). `before_upload` runs once the repo exists, just before the upload (a last
    change of the folder that only makes sense once the Hub was reached; offline it never runs).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **repo_options)
        if before_upload is not None:
            before_upload()
        info = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder),
                                 commit_message=commit_message)
    except OfflineModeIsEnabled:
        raise error(f"cannot push {folder} to {repo_id}: offline (HF_HUB_OFFLINE is set), nothing was pushed; "
                    "the folder is ready: push it again on a machine with network access") from None
    except Exception as exc:  # authentication and network errors from the Hub client: say what failed
        raise error(f"upload of {folder} to {repo_id} failed: {type(exc).__name__}: {exc}") from exc
    return str(getattr(info, "commit_url", info))
