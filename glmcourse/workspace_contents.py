"""The lab's file manager for a learner's workspace: the course's own files are served read-only.

A workspace (``glmcourse.workspace``) links to ``glmcourse/`` and ``notebooks/solutions/`` so the
learner can open them from the lab. Anything whose real location is outside the served folder, as
those links' targets are, is opened read-only here: saving, renaming, deleting or creating files there
is refused with a message that says to copy the file into the workspace first. Copying it into the
workspace (File Browser > Copy / Paste) works as usual.

    jupyter lab --ServerApp.contents_manager_class=glmcourse.workspace_contents.WorkspaceContentsManager
"""
from __future__ import annotations

import os

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado.web import HTTPError


class WorkspaceContentsManager(AsyncLargeFileManager):
    """JupyterLab's default file manager, read-only outside the real folder it serves."""

    def is_course_file(self, path: str) -> bool:
        """True when the API path resolves (links followed) to a place outside the served folder."""
        real = os.path.realpath(self._get_os_path(path.strip("/")))
        root = os.path.realpath(self.root_dir)
        return not (real == root or real.startswith(root + os.sep))

    def _refuse(self, path: str, what: str):
        raise HTTPError(403, f"{path}: a course file, read-only here; {what} a copy in your workspace instead "
                             f"(copy it with the file browser, then open the copy).")

    async def get(self, path, *args, **kwargs):
        model = await super().get(path, *args, **kwargs)
        if self.is_course_file(path):
            model["writable"] = False
        if model.get("type") == "directory" and model.get("content"):
            for item in model["content"]:
                if self.is_course_file(item["path"]):
                    item["writable"] = False
        return model

    async def save(self, model, path=""):
        if self.is_course_file(path):
            self._refuse(path, "save")
        return await super().save(model, path)

    async def delete_file(self, path):
        if self.is_course_file(path):
            self._refuse(path, "delete")
        return await super().delete_file(path)

    async def rename_file(self, old_path, new_path):
        for path in (old_path, new_path):
            if self.is_course_file(path):
                self._refuse(path, "rename")
        return await super().rename_file(old_path, new_path)
